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

// webhookSinkCommand is "bevygap webhook-sink": the webhook receiver that publishes on NATS.
type webhookSinkCommand struct {
	env  *Env
	bind string
	cfg  webhooksink.Config
	nats bus.Config
	log  *slog.Logger

	natsListener // opened by Run
}

// ParseFlags reads the flags, BEVYGAP_WEBHOOK_SINK_<FLAG>, NATS_* and the log settings, and
// refuses a bad --bind or NATS inbox prefix.
func (c *webhookSinkCommand) ParseFlags(args []string) error {
	fs := newFlagSet(c.env, "webhook-sink", "[flags]")
	fs.StringVar(&c.bind, "bind", webhooksink.DefaultBind, "ip:port to listen on")
	fs.Int64Var(&c.cfg.MaxBodyBytes, "max-body", webhooksink.DefaultMaxBodyBytes, "webhook body limit in bytes")
	fs.DurationVar(&c.cfg.FlushTimeout, "flush-timeout", webhooksink.DefaultFlushTimeout, "limit for NATS to confirm a publish (then 503)")
	fs.BoolVar(&c.cfg.AllowNonJSON, "allow-non-json", false, "publish bodies that are not JSON too")
	natsCfg := addNATSClientFlags(fs, c.env, "bevygap-webhook-sink")
	logs := addLogFlags(fs, c.env)
	if err := flagsFromEnv(fs, c.env, webhookSinkEnvPrefix); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := logs.logger(c.env.Stderr)
	if err != nil {
		return err
	}
	c.log = log
	if fs.NArg() > 0 {
		return &usageError{message: fmt.Sprintf("unexpected argument %q", fs.Arg(0)), hint: "bevygap webhook-sink -h"}
	}
	c.cfg.Secret = c.env.Getenv(envWebhookSecret)
	if err := checkBindFlag("bevygap webhook-sink", c.bind, webhooksink.DefaultBind); err != nil {
		return err
	}
	c.nats = natsCfg()
	return bus.ValidateInboxPrefix(c.nats.InboxPrefix)
}

// Run listens (a busy --bind fails at once, before the NATS connect wait), connects to NATS
// and serves until ctx ends.
func (c *webhookSinkCommand) Run(ctx context.Context) error {
	logStart(c.log, "webhook-sink")
	if c.cfg.Secret == "" {
		c.log.Warn("no " + envWebhookSecret + " set: anyone who can reach this port can publish webhook events")
	}
	if err := c.open(ctx, c.bind, c.nats, c.log); err != nil {
		return err
	}
	sink, err := webhooksink.New(c.cfg, c.nc, c.log, svcmetrics.NewRegistry())
	if err != nil {
		return err
	}
	c.log.Info("bevygap webhook-sink listening", "addr", c.ln.Addr().String())
	return sink.Serve(ctx, c.ln)
}
