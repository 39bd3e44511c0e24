package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/netcode"
)

// tokenKeyEnv is the environment variable "bevygap token" reads the private key from when
// --key is not given.
const tokenKeyEnv = "BEVYGAP_TOKEN_KEY"

// maxTokenInput bounds what "bevygap token inspect -" reads from stdin: a base64 token is
// 2732 characters, so anything much longer is not a token.
const maxTokenInput = 64 << 10

const tokenSynopsis = "mint|inspect [flags]"

// tokenCommand is "bevygap token mint" and "bevygap token inspect": ParseFlags picks the
// subcommand, which does the rest.
type tokenCommand struct {
	env *Env
	sub command
	nothingToClose
}

// ParseFlags picks mint or inspect and lets it parse the rest of the command line.
func (c *tokenCommand) ParseFlags(args []string) error {
	if len(args) == 0 {
		return &usageError{message: "token needs a subcommand: mint or inspect", hint: "bevygap token mint -h"}
	}
	switch args[0] {
	case "mint":
		c.sub = &tokenMintCommand{env: c.env}
	case "inspect":
		c.sub = &tokenInspectCommand{env: c.env}
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(c.env.Stderr, "Usage: bevygap token %s\n\n"+
			"  mint     mint a connect token for a game server (prints base64, or --json)\n"+
			"  inspect  decode a connect token; with --key also open its private part\n\n"+
			"Run \"bevygap token mint -h\" or \"bevygap token inspect -h\" for the flags.\n", tokenSynopsis)
		return flag.ErrHelp
	default:
		return &usageError{message: fmt.Sprintf("unknown token subcommand %q (want mint or inspect)", args[0]), hint: "bevygap token -h"}
	}
	return c.sub.ParseFlags(args[1:])
}

// Run runs the subcommand.
func (c *tokenCommand) Run(ctx context.Context) error { return c.sub.Run(ctx) }

// addrList is a repeatable IP:PORT flag.
type addrList []netip.AddrPort

func (l *addrList) String() string {
	parts := make([]string, len(*l))
	for i, a := range *l {
		parts[i] = a.String()
	}
	return strings.Join(parts, ",")
}

func (l *addrList) Set(s string) error {
	a, err := netip.ParseAddrPort(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("want IP:PORT or [IPv6]:PORT, got %q", s)
	}
	*l = append(*l, a)
	return nil
}

// keyFlag is --key. Set never fails: the flag package would print the rejected value (the
// key) in its error, so a parse error is kept and reported by resolve without the value.
type keyFlag struct {
	key netcode.Key
	err error
	set bool
}

func (k *keyFlag) String() string { return "" }

func (k *keyFlag) Set(s string) error {
	k.key, k.err = netcode.ParseKey(s)
	k.set = true
	return nil
}

// resolve returns the key from --key, else from BEVYGAP_TOKEN_KEY; ok is false when neither
// is set.
func (k *keyFlag) resolve(env *Env) (key netcode.Key, ok bool, err error) {
	if k.set {
		if k.err != nil {
			return netcode.Key{}, false, &usageError{message: "--key: " + k.err.Error()}
		}
		return k.key, true, nil
	}
	s := env.Getenv(tokenKeyEnv)
	if strings.TrimSpace(s) == "" {
		return netcode.Key{}, false, nil
	}
	v, err := netcode.ParseKey(s)
	if err != nil {
		return netcode.Key{}, false, &usageError{message: fmt.Sprintf("%s: %v", tokenKeyEnv, err)}
	}
	return v, true, nil
}

const keyUsage = "private key: 32 comma-separated bytes (1,2,...,32), 64 hex characters or base64 (default $" + tokenKeyEnv + ")"

// tokenMintCommand is "bevygap token mint".
type tokenMintCommand struct {
	env    *Env
	minter netcode.Minter
	params netcode.TokenParams
	asJSON bool
	nothingToClose
}

// ParseFlags reads the key (--key or BEVYGAP_TOKEN_KEY) and the token's fields, and refuses
// what would make a useless or unsafe token.
func (c *tokenMintCommand) ParseFlags(args []string) error {
	env := c.env
	fs := newFlagSet(env, "token mint", "--key K --client-id N --server IP:PORT [--server ...] [flags]")
	var (
		key        keyFlag
		servers    addrList
		internal   addrList
		format     netcode.Format
		protocolID = fs.Uint64("protocol-id", 1982, "protocol id of the game (bevygap's default 1982)")
		clientID   = fs.Uint64("client-id", 0, "client id the game server will see (required)")
		expire     = fs.Int64("expire", netcode.DefaultExpireSeconds, "token lifetime in seconds; negative = never expires")
		timeout    = fs.Int("timeout", netcode.DefaultTimeoutSeconds, "connection timeout in seconds; negative = never time out")
		userHex    = fs.String("user-data-hex", "", "user data as hex, up to 256 bytes (zero-padded)")
		asJSON     = fs.Bool("json", false, "print every field as JSON instead of the base64 token")
		allowZero  = fs.Bool("allow-zero-key", false, "accept the all-zero key (dev only: anyone can mint tokens for it)")
	)
	fs.Var(&key, "key", keyUsage)
	fs.Var(&servers, "server", "public game server address IP:PORT the client dials (repeatable, 1..32)")
	fs.Var(&internal, "internal", "address IP:PORT put in the private part instead of --server (repeatable, optional)")
	fs.Var(&format, "format", "byte order: lightyear-0.17 (bevygap) or lightyear-0.20")
	if _, err := parseInterspersed(fs, args, 0); err != nil {
		return err
	}
	k, ok, err := key.resolve(env)
	if err != nil {
		return err
	}
	if !ok {
		return &usageError{message: "a private key is required: --key or $" + tokenKeyEnv, hint: "bevygap token mint -h"}
	}
	if err := netcode.ValidateKey(k, *allowZero); err != nil {
		return &usageError{message: err.Error(), hint: "use the game's real key, or --allow-zero-key for local development"}
	}
	if !flagWasSet(fs, "client-id") {
		return &usageError{message: "--client-id is required", hint: "bevygap token mint -h"}
	}
	if len(servers) == 0 {
		return &usageError{message: "at least one --server IP:PORT is required", hint: "bevygap token mint -h"}
	}
	if *timeout > math.MaxInt32 || *timeout < math.MinInt32 {
		return &usageError{message: fmt.Sprintf("--timeout %d is out of range", *timeout)}
	}
	p := netcode.TokenParams{
		ProtocolID:     *protocolID,
		ClientID:       *clientID,
		ServerAddrs:    servers,
		InternalAddrs:  internal,
		ExpireSeconds:  *expire,
		TimeoutSeconds: int32(*timeout),
	}
	if *expire == 0 {
		return &usageError{message: "--expire 0 would make a token that is already expired; use a positive number, or a negative one for never"}
	}
	if *timeout == 0 {
		return &usageError{message: "--timeout 0 would time out at once; use a positive number, or a negative one for never"}
	}
	if *userHex != "" {
		b, err := hex.DecodeString(strings.TrimSpace(*userHex))
		if err != nil {
			return &usageError{message: "--user-data-hex is not valid hex"}
		}
		if len(b) > netcode.UserDataBytes {
			return &usageError{message: fmt.Sprintf("--user-data-hex is %d bytes, at most %d fit", len(b), netcode.UserDataBytes)}
		}
		copy(p.UserData[:], b)
	}
	c.minter = netcode.Minter{Key: k, Format: format}
	c.params, c.asJSON = p, *asJSON
	return nil
}

// Run mints the token and prints it: base64, or every field as JSON.
func (c *tokenMintCommand) Run(context.Context) error {
	p := c.params
	tok, err := c.minter.Mint(p)
	if err != nil {
		if errors.Is(err, netcode.ErrAddress) {
			return &usageError{message: err.Error()}
		}
		return err
	}
	if !c.asJSON {
		_, err := fmt.Fprintln(c.env.Stdout, tok.Base64())
		return err
	}
	priv := &netcode.PrivateToken{
		ClientID:          p.ClientID,
		TimeoutSeconds:    tok.TimeoutSeconds,
		ServerAddrs:       p.ServerAddrs,
		ClientToServerKey: tok.ClientToServerKey,
		ServerToClientKey: tok.ServerToClientKey,
		UserData:          p.UserData,
	}
	if len(p.InternalAddrs) > 0 {
		priv.ServerAddrs = p.InternalAddrs
	}
	return writeJSON(c.env.Stdout, describeToken(tok, priv, time.Now()))
}

// tokenInspectCommand is "bevygap token inspect".
type tokenInspectCommand struct {
	env     *Env
	text    string // the token, or "-" for stdin
	format  netcode.Format
	key     netcode.Key
	haveKey bool
	asJSON  bool
	nothingToClose
}

// ParseFlags reads the flags, the one token argument and the key, if any.
func (c *tokenInspectCommand) ParseFlags(args []string) error {
	fs := newFlagSet(c.env, "token inspect", "[--key K] [--format F] [--json] TOKEN_BASE64|-")
	var key keyFlag
	fs.BoolVar(&c.asJSON, "json", false, "print JSON instead of text")
	fs.Var(&key, "key", keyUsage+"; without a key only the public part is shown")
	fs.Var(&c.format, "format", "byte order: lightyear-0.17 (bevygap) or lightyear-0.20")
	pos, err := parseInterspersed(fs, args, 1)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return &usageError{message: "inspect takes exactly one token (base64, or - to read stdin)", hint: "bevygap token inspect -h"}
	}
	c.text = pos[0]
	c.key, c.haveKey, err = key.resolve(c.env)
	return err
}

// Run reads the token (from stdin for "-"), decodes it, opens its private part with the key,
// if any, and prints every field.
func (c *tokenInspectCommand) Run(context.Context) error {
	text := c.text
	if text == "-" {
		b, err := io.ReadAll(io.LimitReader(c.env.Stdin, maxTokenInput+1))
		if err != nil {
			return fmt.Errorf("read token from stdin: %w", err)
		}
		if len(b) > maxTokenInput {
			return fmt.Errorf("stdin holds more than %d bytes: not a connect token", maxTokenInput)
		}
		text = string(b)
	}
	tok, err := netcode.DecodeConnectTokenBase64(text, c.format)
	if err != nil {
		return withFormatHint(err, text, c.format)
	}
	var priv *netcode.PrivateToken
	if c.haveKey {
		if priv, err = tok.Open(c.key); err != nil {
			return err
		}
	}
	d := describeToken(tok, priv, time.Now())
	if c.asJSON {
		return writeJSON(c.env.Stdout, d)
	}
	return d.writeText(c.env.Stdout)
}

// withFormatHint adds "try --format X" to a decode error when the token decodes in the other
// byte order.
func withFormatHint(err error, text string, f netcode.Format) error {
	other := netcode.FormatLightyear020
	if f == netcode.FormatLightyear020 {
		other = netcode.FormatLightyear017
	}
	if errors.Is(err, netcode.ErrAddress) {
		if _, e := netcode.DecodeConnectTokenBase64(text, other); e == nil {
			return fmt.Errorf("%w (it decodes as %s: try --format %s)", err, other, other)
		}
	}
	return err
}

// parseInterspersed parses flags that may come before or after up to maxPositional
// positional arguments, and returns the positionals.
func parseInterspersed(fs *flag.FlagSet, args []string, maxPositional int) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(pos) >= maxPositional {
			return nil, &usageError{message: fmt.Sprintf("unexpected argument %q", rest[0]), hint: fs.Name() + " -h"}
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// flagWasSet reports whether the flag name was given on the command line.
func flagWasSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// tokenDescription is everything "bevygap token" prints about a token. Keys are the
// per-connection keys carried in the token, never the private key.
type tokenDescription struct {
	Format            string          `json:"format"`
	Version           string          `json:"version"`
	ProtocolID        uint64          `json:"protocol_id"`
	CreateTimestamp   uint64          `json:"create_timestamp"`
	Created           string          `json:"created"`
	ExpireTimestamp   uint64          `json:"expire_timestamp"`
	Expires           string          `json:"expires"`
	Expired           bool            `json:"expired"`
	TimeoutSeconds    int32           `json:"timeout_seconds"`
	Nonce             string          `json:"nonce"`
	ServerAddrs       []string        `json:"server_addresses"`
	ClientToServerKey string          `json:"client_to_server_key"`
	ServerToClientKey string          `json:"server_to_client_key"`
	Private           *privateSummary `json:"private,omitempty"`
	TokenBase64       string          `json:"token_base64"`
}

// privateSummary is the opened private part.
type privateSummary struct {
	ClientID          uint64   `json:"client_id"`
	TimeoutSeconds    int32    `json:"timeout_seconds"`
	ServerAddrs       []string `json:"server_addresses"`
	ClientToServerKey string   `json:"client_to_server_key"`
	ServerToClientKey string   `json:"server_to_client_key"`
	UserData          string   `json:"user_data"`
}

func describeToken(t *netcode.ConnectToken, p *netcode.PrivateToken, now time.Time) *tokenDescription {
	d := &tokenDescription{
		Format:            t.Format.String(),
		Version:           strings.TrimRight(netcode.VersionInfo, "\x00"),
		ProtocolID:        t.ProtocolID,
		CreateTimestamp:   t.CreateTimestamp,
		Created:           unixText(t.CreateTimestamp),
		ExpireTimestamp:   t.ExpireTimestamp,
		Expires:           unixText(t.ExpireTimestamp),
		Expired:           netcode.CheckExpiry(t.ExpireTimestamp, now) != nil,
		TimeoutSeconds:    t.TimeoutSeconds,
		Nonce:             hex.EncodeToString(t.Nonce[:]),
		ServerAddrs:       addrStrings(t.ServerAddrs),
		ClientToServerKey: string(t.ClientToServerKey.AppendHex(nil)),
		ServerToClientKey: string(t.ServerToClientKey.AppendHex(nil)),
		TokenBase64:       t.Base64(),
	}
	if p != nil {
		d.Private = &privateSummary{
			ClientID:          p.ClientID,
			TimeoutSeconds:    p.TimeoutSeconds,
			ServerAddrs:       addrStrings(p.ServerAddrs),
			ClientToServerKey: string(p.ClientToServerKey.AppendHex(nil)),
			ServerToClientKey: string(p.ServerToClientKey.AppendHex(nil)),
			UserData:          hex.EncodeToString(p.UserData[:]),
		}
	}
	return d
}

// writeText prints d as aligned "field: value" lines.
func (d *tokenDescription) writeText(w io.Writer) error {
	var b bytes.Buffer
	line := func(k string, v any) { fmt.Fprintf(&b, "%-24s %v\n", k+":", v) }
	line("format", d.Format)
	line("version", d.Version)
	line("protocol id", d.ProtocolID)
	line("create timestamp", fmt.Sprintf("%d (%s)", d.CreateTimestamp, d.Created))
	exp := fmt.Sprintf("%d (%s)", d.ExpireTimestamp, d.Expires)
	if d.Expired {
		exp += " EXPIRED"
	}
	line("expire timestamp", exp)
	line("timeout seconds", d.TimeoutSeconds)
	line("nonce", d.Nonce)
	line("server addresses", strings.Join(d.ServerAddrs, " "))
	line("client-to-server key", d.ClientToServerKey)
	line("server-to-client key", d.ServerToClientKey)
	if p := d.Private; p != nil {
		b.WriteString("private part (opened with the key):\n")
		line("  client id", p.ClientID)
		line("  timeout seconds", p.TimeoutSeconds)
		line("  server addresses", strings.Join(p.ServerAddrs, " "))
		line("  client-to-server key", p.ClientToServerKey)
		line("  server-to-client key", p.ServerToClientKey)
		ud := strings.TrimRight(p.UserData, "0")
		if ud == "" {
			ud = "(all zero)"
		} else {
			if len(ud)%2 == 1 {
				ud += "0"
			}
			ud += " (then zeros)"
		}
		line("  user data", ud)
	} else {
		b.WriteString("private part:            sealed (give --key to open it)\n")
	}
	_, err := w.Write(b.Bytes())
	return err
}

func unixText(ts uint64) string {
	if ts == math.MaxUint64 {
		return "never"
	}
	if ts > math.MaxInt64 {
		return "far future"
	}
	return time.Unix(int64(ts), 0).UTC().Format(time.RFC3339)
}

func addrStrings(list []netip.AddrPort) []string {
	out := make([]string, len(list))
	for i, a := range list {
		out[i] = a.String()
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
