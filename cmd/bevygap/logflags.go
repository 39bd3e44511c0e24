package main

// The log flags shared by every command that logs (dev, edgegap-sim, httpd, matchmaker,
// webhook-sink): one way to choose the level and the format, from a flag or the environment.

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/bevygap-go/bevygap/buildinfo"
)

// Environment variables of the log flags: the defaults of --log-level and --log-format, for
// every command (no BEVYGAP_<COMMAND>_ prefix). A flag on the command line wins.
const (
	envLogLevel  = "LOG_LEVEL"
	envLogFormat = "LOG_FORMAT"
)

// logFlags holds --log-level and --log-format until the command line is parsed.
type logFlags struct {
	level, format string
}

// addLogFlags adds --log-level (debug, info, warn, error; default $LOG_LEVEL, else info) and
// --log-format (text, json; default $LOG_FORMAT, else text) to fs. Call logger after parsing.
func addLogFlags(fs *flag.FlagSet, env *Env) *logFlags {
	l := &logFlags{level: env.Getenv(envLogLevel), format: env.Getenv(envLogFormat)}
	if l.level == "" {
		l.level = "info"
	}
	if l.format == "" {
		l.format = "text"
	}
	fs.StringVar(&l.level, "log-level", l.level, "log level: debug, info, warn or error ($"+envLogLevel+")")
	fs.StringVar(&l.format, "log-format", l.format, "log format: text or json ($"+envLogFormat+")")
	return l
}

// logger returns the logger the flags ask for, writing to w, or a usage error naming the flag
// and its variable.
func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.TrimSpace(l.level))); err != nil {
		return nil, &usageError{
			message: fmt.Sprintf("--log-level (or $%s) %q: want debug, info, warn or error", envLogLevel, l.level),
			hint:    "--log-level debug",
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(strings.TrimSpace(l.format)) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, &usageError{
		message: fmt.Sprintf("--log-format (or $%s) %q: want text or json", envLogFormat, l.format),
		hint:    "--log-format json",
	}
}

// logStart writes the first line of a command that logs, at debug level: which command and
// version runs. It shows an operator that --log-level debug took effect.
func logStart(log *slog.Logger, command string) {
	log.Debug("starting", "command", "bevygap "+command, "version", buildinfo.Version())
}
