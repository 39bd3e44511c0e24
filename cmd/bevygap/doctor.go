package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/doctor"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/matchmaker"
)

// doctorEnvPrefix prefixes the environment variable of every doctor flag (after the
// matchmaker's BEVYGAP_MATCHMAKER_<FLAG>, which it reads too, so that it sees what the
// matchmaker sees). A flag on the command line wins.
const doctorEnvPrefix = "BEVYGAP_DOCTOR_"

// doctorCommand is "bevygap doctor": checks an installation and explains what is wrong.
type doctorCommand struct {
	env     *Env
	cfg     doctor.Config
	json    bool
	timeout time.Duration
	nothingToClose
}

// errDoctorFailed is the error of a run in which a check failed (exit 1); the report already
// says what and why.
var errDoctorFailed = errors.New("bevygap doctor: some checks failed (see above)")

// gameList is the repeatable --game name/version flag.
type gameList struct{ games []doctor.Game }

func (g *gameList) String() string {
	if g == nil {
		return ""
	}
	parts := make([]string, len(g.games))
	for i, x := range g.games {
		parts[i] = x.String()
	}
	return strings.Join(parts, ",")
}

func (g *gameList) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		name, version, ok := strings.Cut(strings.TrimSpace(part), "/")
		if !ok || name == "" || version == "" {
			return fmt.Errorf("%q: want name/version, e.g. dotroom/1", part)
		}
		g.games = append(g.games, doctor.Game{Name: name, Version: version})
	}
	return nil
}

// ParseFlags reads the matchmaker's flags and environment (BEVYGAP_MATCHMAKER_<FLAG>,
// EDGEGAP_API_KEY/URL, NATS_*), the doctor's own (BEVYGAP_DOCTOR_<FLAG>) and the per-role NATS
// credentials BEVYGAP_DOCTOR_<ROLE>_NATS_USER/_NATS_PASSWORD/_NATS_INBOX_PREFIX.
func (c *doctorCommand) ParseFlags(args []string) error {
	env := c.env
	d := matchmaker.DefaultConfig()
	var cfg doctor.Config
	fs := newFlagSet(env, "doctor", "[flags]")
	appName := fs.String("app-name", d.AppName, "Edgegap application name (the matchmaker's)")
	appVersion := fs.String("app-version", d.AppVersion, "Edgegap application version (the matchmaker's)")
	var games gameList
	fs.Var(&games, "game", "more games to check, name/version (repeatable or comma separated)")
	fs.StringVar(&cfg.PrivateKey, "lightyear-private-key", "", "the matchmaker's Lightyear private key (better: $"+matchmakerEnvPrefix+"LIGHTYEAR_PRIVATE_KEY); never printed")
	fs.BoolVar(&cfg.AllowZeroKey, "allow-zero-key", false, "the matchmaker runs with --allow-zero-key")
	fs.StringVar(&cfg.WebhookURL, "session-webhook-url", "", "the matchmaker's --session-webhook-url (the doctor posts a test body to it)")
	fs.StringVar(&cfg.WebhookSubject, "webhook-subject", d.WebhookSubject, "the matchmaker's --webhook-subject")
	fs.StringVar(&cfg.Buckets.Prefix, "bucket-prefix", "", "the matchmaker's --bucket-prefix")
	fs.IntVar(&cfg.Buckets.Replicas, "replicas", 1, "the matchmaker's --replicas")
	fs.StringVar(&cfg.EdgegapURL, "edgegap-api-url", env.Getenv(edgegap.EnvAPIURL), "Edgegap API base URL ($"+edgegap.EnvAPIURL+"; default "+edgegap.DefaultBaseURL+")")
	fs.StringVar(&cfg.Role, "nats-role", doctor.RoleMatchmaker, "role of the NATS_USER credentials, whose permissions are tried: "+strings.Join(doctor.Roles(), ", ")+" or none")
	skip := fs.String("skip", "", "check groups not to run, comma separated: "+strings.Join(doctor.Groups(), ", "))
	fs.DurationVar(&cfg.CallTimeout, "call-timeout", 5*time.Second, "limit of each network call")
	fs.DurationVar(&c.timeout, "timeout", 60*time.Second, "limit of the whole run")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	natsCfg := addNATSClientFlags(fs, env, "bevygap-doctor")
	// The matchmaker's variables first, then the doctor's, then the command line.
	if err := flagsFromEnv(fs, env, matchmakerEnvPrefix); err != nil {
		return err
	}
	if err := flagsFromEnv(fs, env, doctorEnvPrefix); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{message: fmt.Sprintf("unexpected argument %q", fs.Arg(0)), hint: "bevygap doctor -h"}
	}
	if *skip != "" {
		for _, g := range strings.Split(*skip, ",") {
			g = strings.TrimSpace(g)
			if !slices.Contains(doctor.Groups(), g) {
				return &usageError{message: fmt.Sprintf("--skip %q: unknown check group", g), hint: "--skip " + strings.Join(doctor.Groups(), ",")}
			}
			cfg.Skip = append(cfg.Skip, g)
		}
	}
	if cfg.Role != "none" && !slices.Contains(doctor.Roles(), cfg.Role) {
		return &usageError{message: fmt.Sprintf("--nats-role %q: unknown role", cfg.Role), hint: "--nats-role " + strings.Join(doctor.Roles(), "|") + "|none"}
	}
	if cfg.CallTimeout <= 0 || c.timeout <= 0 {
		return &usageError{message: "--call-timeout and --timeout must be positive", hint: "--call-timeout 5s --timeout 60s"}
	}
	cfg.Games = append([]doctor.Game{{Name: *appName, Version: *appVersion}}, games.games...)
	cfg.EdgegapKey = env.Getenv(edgegap.EnvAPIKey)
	cfg.NATS = natsCfg()
	for _, role := range doctor.Roles() {
		p := doctorEnvPrefix + strings.ToUpper(strings.ReplaceAll(role, "-", "_")) + "_NATS_"
		if user := env.Getenv(p + "USER"); user != "" {
			cfg.RoleCredentials = append(cfg.RoleCredentials, doctor.RoleCredentials{
				Role: role, User: user, Password: env.Getenv(p + "PASSWORD"), InboxPrefix: env.Getenv(p + "INBOX_PREFIX"),
			})
		}
	}
	c.cfg = cfg
	return nil
}

// Run runs the checks and prints the report; it fails (exit 1) when a check failed.
func (c *doctorCommand) Run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	rep := doctor.Run(ctx, c.cfg)
	var err error
	if c.json {
		err = doctor.WriteJSON(c.env.Stdout, rep)
	} else {
		err = doctor.WriteText(c.env.Stdout, rep)
	}
	if err != nil {
		return err
	}
	if !rep.OK {
		return errDoctorFailed
	}
	return nil
}
