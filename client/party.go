package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/protocol"
)

// Errors of party operations. A failure the front door or the matchmaker answered is a
// *protocol.PlayError (errors.As: its Code is the HTTP status, its Message the reason) wrapped
// with one of these sentinels (errors.Is), chosen by the status.
var (
	// ErrPartyNotFound (404): no party has this code (never existed, or everybody left).
	ErrPartyNotFound = errors.New("client: party not found")
	// ErrPartyConflict (409): the party is full, the player is already in a party, or the party
	// is already on its way to a game.
	ErrPartyConflict = errors.New("client: party conflict")
	// ErrPartyForbidden (403): the party token is not a member's, or the operation is the
	// leader's (kick) and the caller is not the leader.
	ErrPartyForbidden = errors.New("client: party operation not allowed")
	// ErrPartyInvalid (400): the front door refused the operation's input (malformed code,
	// token or member id).
	ErrPartyInvalid = errors.New("client: invalid party operation")
	// ErrPartyUnavailable (429, 5xx): rate limited, no matchmaker serving the game and version,
	// or no answer in time. Worth retrying later.
	ErrPartyUnavailable = errors.New("client: party service unavailable")
)

// DefaultPartyPollInterval is how often [PartyClient.Wait] looks at the party.
const DefaultPartyPollInterval = time.Second

// maxPartyReplyBytes bounds a party route's answer.
const maxPartyReplyBytes = 64 << 10

// PartyClient manages parties of one game and version over the front door's party routes
// (docs/play-together.md):
//
//	POST /matchmaker/party/{game}/{version}               Create
//	POST /matchmaker/party/{game}/{version}/{code}/join   Join
//	POST /matchmaker/party/{game}/{version}/{code}/leave  Leave
//	POST /matchmaker/party/{game}/{version}/{code}/kick   Kick
//	GET  /matchmaker/party/{game}/{version}/{code}        Get
//
// The party token goes in an Authorization: Bearer header, never in the URL. Playing as a
// party is then a session request with Options.Party set to [Membership.Ref]. A PartyClient is
// safe for concurrent use.
type PartyClient struct {
	base     string // …/matchmaker/party/{game}/{version}, no query
	clientIP string
	hc       *http.Client
	header   http.Header
	log      *slog.Logger
}

// NewPartyClient returns a party client for game (version) at the front door url, which takes
// the same forms as [Request]'s (ws://host:3000/matchmaker/ws, http://host:3000, …; the scheme
// only chooses TLS). Of opts it uses ClientIP, HTTPClient, Header and Logger.
func NewPartyClient(url, game, version string, opts Options) (*PartyClient, error) {
	if err := protocol.ValidateGameVersion(game, version); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	base, err := partyEndpoint(url, game, version)
	if err != nil {
		return nil, err
	}
	c := &PartyClient{base: base, clientIP: opts.ClientIP, hc: opts.HTTPClient, header: opts.Header, log: opts.Logger}
	if c.hc == nil {
		c.hc = http.DefaultClient
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Membership is the caller's place in a party: the party's code, the caller's member id and
// party token (proof of membership, a credential), and the party as last seen. Its String and
// LogValue never show the token.
type Membership struct {
	// Code is the party's code, what the others join with.
	Code string
	// Member is the caller's member id in the party.
	Member string
	// Token is the caller's party token. Do not log it or put it in a URL.
	Token string
	// Party is the party as the last operation left it.
	Party protocol.Party
}

// Ref returns the party reference a session request carries (Options.Party).
func (m *Membership) Ref() *protocol.PartyRef {
	return &protocol.PartyRef{Code: m.Code, Token: m.Token}
}

// Leader reports whether the caller leads the party (as last seen).
func (m *Membership) Leader() bool {
	for _, p := range m.Party.Members {
		if p.ID == m.Member {
			return p.Leader
		}
	}
	return false
}

// String describes m without its token.
func (m *Membership) String() string {
	return "member " + strconv.Quote(m.Member) + " of party " + m.Code
}

// LogValue logs m without its token.
func (m *Membership) LogValue() slog.Value {
	return slog.GroupValue(slog.String("party", m.Code), slog.String("member", m.Member))
}

// Create starts a party; the caller becomes its leader.
func (c *PartyClient) Create(ctx context.Context) (*Membership, error) {
	r, err := c.do(ctx, http.MethodPost, "", "", nil)
	if err != nil {
		return nil, err
	}
	return membership(r, "")
}

// Join joins the party with code (case does not matter: codes are upper case).
func (c *PartyClient) Join(ctx context.Context, code string) (*Membership, error) {
	code, err := normCode(code)
	if err != nil {
		return nil, err
	}
	r, err := c.do(ctx, http.MethodPost, "/"+code+"/join", "", nil)
	if err != nil {
		return nil, err
	}
	return membership(r, code)
}

// Get refreshes m.Party and returns it.
func (c *PartyClient) Get(ctx context.Context, m *Membership) (*protocol.Party, error) {
	r, err := c.do(ctx, http.MethodGet, "/"+m.Code, m.Token, nil)
	if err != nil {
		return nil, err
	}
	if r.Party == nil {
		return nil, fmt.Errorf("%w: party reply without a party", ErrProtocol)
	}
	m.Party = *r.Party
	return r.Party, nil
}

// Leave leaves the party (a leaving leader hands the lead on; see docs/play-together.md).
func (c *PartyClient) Leave(ctx context.Context, m *Membership) error {
	_, err := c.do(ctx, http.MethodPost, "/"+m.Code+"/leave", m.Token, nil)
	return err
}

// Kick removes member from the party; only the leader may. It refreshes m.Party.
func (c *PartyClient) Kick(ctx context.Context, m *Membership, member string) error {
	r, err := c.do(ctx, http.MethodPost, "/"+m.Code+"/kick", m.Token, map[string]string{"member": member})
	if err != nil {
		return err
	}
	if r.Party != nil {
		m.Party = *r.Party
	}
	return nil
}

// Wait polls the party every DefaultPartyPollInterval until ready says it is ready (or ctx
// ends, or an operation fails) and returns it. A leader waits this way for its members, e.g.
// until every member has an open session request ([protocol.PartyMember.Waiting]).
func (c *PartyClient) Wait(ctx context.Context, m *Membership, ready func(*protocol.Party) bool) (*protocol.Party, error) {
	t := time.NewTicker(DefaultPartyPollInterval)
	defer t.Stop()
	for {
		p, err := c.Get(ctx, m)
		if err != nil {
			return nil, err
		}
		if ready(p) {
			return p, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctxError(ctx, "waiting for the party")
		case <-t.C:
		}
	}
}

// do runs one party operation and returns the matchmaker's successful reply.
func (c *PartyClient) do(ctx context.Context, method, path, token string, body map[string]string) (*protocol.PartyReply, error) {
	u := c.base + path
	if c.clientIP != "" {
		u += "?client_ip=" + url.QueryEscape(c.clientIP)
	}
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("client: encode party request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	for k, vs := range c.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c.log.DebugContext(ctx, "party request", "method", method, "url", u) // the token is in a header, not logged
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx, "talking to the party service")
		}
		return nil, fmt.Errorf("%w at %s: %w", ErrConnect, u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxPartyReplyBytes))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the party reply: %w", ErrConnect, err)
	}
	var r protocol.PartyReply
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct != "application/json" || json.Unmarshal(raw, &r) != nil {
		// Not the party service's answer: e.g. a front door without party routes (404 text).
		if resp.StatusCode != http.StatusOK {
			return nil, &StatusError{StatusCode: resp.StatusCode, Body: strings.TrimSpace(string(raw[:min(len(raw), 512)]))}
		}
		return nil, fmt.Errorf("%w: party reply %s", ErrProtocol, snippet(raw))
	}
	if r.Error != nil || resp.StatusCode != http.StatusOK {
		pe := r.Error
		if pe == nil {
			pe = &protocol.PlayError{Code: uint16(resp.StatusCode), Message: http.StatusText(resp.StatusCode)}
		}
		c.log.DebugContext(ctx, "party request failed", "status", resp.StatusCode, logkey.Err, pe)
		return nil, fmt.Errorf("%w: %w", partySentinel(resp.StatusCode), pe)
	}
	return &r, nil
}

// partySentinel maps an HTTP status to the party error sentinels.
func partySentinel(status int) error {
	switch status {
	case http.StatusNotFound:
		return ErrPartyNotFound
	case http.StatusConflict:
		return ErrPartyConflict
	case http.StatusForbidden, http.StatusUnauthorized:
		return ErrPartyForbidden
	case http.StatusTooManyRequests:
		return ErrPartyUnavailable
	}
	if status >= 500 {
		return ErrPartyUnavailable
	}
	return ErrPartyInvalid
}

// membership builds a Membership from a create or join reply.
func membership(r *protocol.PartyReply, fallbackCode string) (*Membership, error) {
	if r.Party == nil || r.Member == "" || r.Token == "" {
		return nil, fmt.Errorf("%w: party reply without party, member or token", ErrProtocol)
	}
	code := r.Party.Code
	if code == "" {
		code = fallbackCode
	}
	return &Membership{Code: code, Member: r.Member, Token: r.Token, Party: *r.Party}, nil
}

// normCode upper-cases a party code typed by a player and checks its form.
func normCode(code string) (string, error) {
	c := strings.ToUpper(strings.TrimSpace(code))
	if !protocol.ValidPartyCode(c) {
		return "", fmt.Errorf("%w: party code %q: want %d characters of %s", ErrPartyInvalid, code,
			protocol.PartyCodeLen, protocol.PartyCodeAlphabet)
	}
	return c, nil
}
