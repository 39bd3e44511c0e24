package main

// The flag helpers shared by the NATS-connected service commands (httpd, matchmaker,
// webhook-sink): NATS client flags and flags from environment variables. The log flags are in
// logflags.go.

import (
	"flag"
	"fmt"
	"strings"

	"github.com/bevygap-go/bevygap/bus"
)

// addNATSClientFlags adds --nats-host, --nats-user, --nats-ca, --nats-insecure and
// --nats-inbox-prefix with defaults from the environment (NATS_HOST, NATS_USER, NATS_CA,
// NATS_INSECURE, NATS_INBOX_PREFIX). The password (NATS_PASSWORD or NATS_PASS) and
// NATS_CA_CONTENTS come from the environment only, so that they never show in a process list.
// A bad --nats-inbox-prefix fails flag parsing (a usage error); a bad NATS_INBOX_PREFIX is
// refused by bus.Connect. Call the returned function after parsing.
func addNATSClientFlags(fs *flag.FlagSet, env *Env, name string) func() bus.Config {
	base := bus.ConfigFromEnv(env.Getenv)
	host := fs.String("nats-host", base.Host, "NATS server: host, host:port or URL, comma separated ($NATS_HOST)")
	user := fs.String("nats-user", base.User, "NATS user ($NATS_USER; password only via $NATS_PASSWORD)")
	ca := fs.String("nats-ca", base.CAFile, "PEM file of the CA of the NATS server ($NATS_CA)")
	insecure := fs.Bool("nats-insecure", base.Insecure, "plain TCP to NATS, no TLS ($NATS_INSECURE)")
	inbox := &inboxPrefixFlag{value: base.InboxPrefix}
	fs.Var(inbox, "nats-inbox-prefix", "prefix of this service's NATS reply subjects, e.g. _INBOX_httpd; empty = _INBOX ($NATS_INBOX_PREFIX)")
	return func() bus.Config {
		c := base
		c.Host, c.User, c.CAFile, c.Insecure, c.Name = *host, *user, *ca, *insecure, name
		c.InboxPrefix = inbox.value
		return c
	}
}

// inboxPrefixFlag is --nats-inbox-prefix: a string checked by bus.ValidateInboxPrefix when set.
type inboxPrefixFlag struct{ value string }

func (f *inboxPrefixFlag) String() string {
	if f == nil {
		return ""
	}
	return f.value
}

func (f *inboxPrefixFlag) Set(s string) error {
	if err := bus.ValidateInboxPrefix(s); err != nil {
		return err
	}
	f.value = s
	return nil
}

// flagsFromEnv sets every flag of fs from the variable prefix + NAME_IN_CAPS when that variable
// is set. The flags every service shares, --nats-* (addNATSClientFlags) and --log-*
// (addLogFlags), are left alone: their variables are the unprefixed NATS_* and LOG_* ones.
// Call it before parseFlags, so that the command line still wins.
func flagsFromEnv(fs *flag.FlagSet, env *Env, prefix string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || strings.HasPrefix(f.Name, "nats-") || strings.HasPrefix(f.Name, "log-") {
			return
		}
		key := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := env.Getenv(key); v != "" {
			if e := f.Value.Set(v); e != nil {
				err = &usageError{message: fmt.Sprintf("%s=%q: %v", key, v, e), hint: fs.Name() + " -h"}
			}
		}
	})
	return err
}
