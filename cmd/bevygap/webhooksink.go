package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/internal/svcmetrics"
	"github.com/bevygap-go/bevygap/webhooksink"
)

// webhookSinkEnvPrefix prefixes the environment variable of every webhook-sink flag.
const webhookSinkEnvPrefix = "BEVYGAP_WEBHOOK_SINK_"

// envWebhookSecret holds the sink's shared secret. It is read from the environment only, never
// from a flag, so that it does not show in a process list.
const envWebhookSecret = "BEVYGAP_WEBHOOK_SECRET"

func runWebhookSink(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "webhook-sink", "[flags]")
	bind := fs.String("bind", webhooksink.DefaultBind, "ip:port to listen on")
	maxBody := fs.Int64("max-body", webhooksink.DefaultMaxBodyBytes, "webhook body limit in bytes")
	flushTimeout := fs.Duration("flush-timeout", webhooksink.DefaultFlushTimeout, "limit for NATS to confirm a publish (then 503)")
	allowNonJSON := fs.Bool("allow-non-json", false, "publish bodies that are not JSON too")
	natsCfg := addNATSClientFlags(fs, env, "bevygap-webhook-sink")
	if err := flagsFromEnv(fs, env, webhookSinkEnvPrefix, "nats-"); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{message: fmt.Sprintf("unexpected argument %q", fs.Arg(0)), hint: "bevygap webhook-sink -h"}
	}
	cfg := webhooksink.Config{
		Secret:       env.Getenv(envWebhookSecret),
		MaxBodyBytes: *maxBody,
		FlushTimeout: *flushTimeout,
		AllowNonJSON: *allowNonJSON,
	}
	// Refuse a bad NATS configuration, then listen, both before connecting to NATS: a bad or
	// busy --bind is reported at once, not after the NATS connect wait.
	busCfg := natsCfg()
	if err := bus.ValidateInboxPrefix(busCfg.InboxPrefix); err != nil {
		return err
	}
	ln, err := listenBind(ctx, "bevygap webhook-sink", *bind, webhooksink.DefaultBind)
	if err != nil {
		return err
	}
	defer ln.Close() // Serve closes it too; this covers the errors before Serve
	log := slog.New(slog.NewTextHandler(env.Stderr, nil))
	if cfg.Secret == "" {
		log.Warn("no " + envWebhookSecret + " set: anyone who can reach this port can publish webhook events")
	}
	nc, err := bus.Connect(ctx, busCfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	sink, err := webhooksink.New(cfg, nc, log, svcmetrics.NewRegistry())
	if err != nil {
		return err
	}
	log.Info("bevygap webhook-sink listening", "addr", ln.Addr().String())
	return sink.Serve(ctx, ln)
}
