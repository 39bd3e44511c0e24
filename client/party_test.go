package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/httpd"
	"github.com/bevygap-go/bevygap/internal/bustest"
	"github.com/bevygap-go/bevygap/internal/natsembed"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// These tests run the SDK against the real front door (package httpd) on an embedded NATS,
// with a fake matchmaker: a party service keeping parties in memory, and a session service
// that echoes the request it got as a ProgressReport before its SessionReady.

const testGame, testVersion = "partygame", "1"

// fakePartyMatchmaker serves matchmaker.party.partygame.1 and matchmaker.request.partygame.1.
type fakePartyMatchmaker struct {
	ready string // the SessionReady frame

	mu      sync.Mutex
	parties map[string]*fakeParty
	next    int
}

type fakeParty struct {
	members []protocol.PartyMember
	tokens  map[string]string // token -> member id
}

func (f *fakePartyMatchmaker) serveParty(m *nats.Msg) {
	var req protocol.PartyRequest
	reply := f.party(m.Data, &req)
	b, _ := protocol.Marshal(reply)
	_ = m.Respond(b)
}

func playErr(code uint16, msg string) protocol.PartyReply {
	return protocol.PartyReply{Error: &protocol.PlayError{Code: code, Message: msg}}
}

func (f *fakePartyMatchmaker) party(data []byte, req *protocol.PartyRequest) protocol.PartyReply {
	if err := json.Unmarshal(data, req); err != nil {
		return playErr(400, "bad request")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	add := func(p *fakeParty, leader bool) (string, string) {
		f.next++
		id, tok := fmt.Sprintf("m%d", f.next), fmt.Sprintf("token-%d-abcdefghijklmnop", f.next)
		p.members = append(p.members, protocol.PartyMember{ID: id, Leader: leader})
		p.tokens[tok] = id
		return id, tok
	}
	view := func(code string, p *fakeParty) *protocol.Party {
		return &protocol.Party{Code: code, Members: append([]protocol.PartyMember(nil), p.members...), Max: 2}
	}
	if req.Op == protocol.PartyOpCreate {
		code := "K7QF2M"
		p := &fakeParty{tokens: map[string]string{}}
		f.parties[code] = p
		id, tok := add(p, true)
		return protocol.PartyReply{Party: view(code, p), Member: id, Token: tok}
	}
	p := f.parties[req.Code]
	if p == nil {
		return playErr(404, "unknown party code")
	}
	if req.Op == protocol.PartyOpJoin {
		if len(p.members) >= 2 {
			return playErr(409, "the party is full")
		}
		id, tok := add(p, false)
		return protocol.PartyReply{Party: view(req.Code, p), Member: id, Token: tok}
	}
	me, ok := p.tokens[req.Token]
	if !ok {
		return playErr(403, "not a member of this party")
	}
	switch req.Op {
	case protocol.PartyOpGet:
	case protocol.PartyOpKick:
		if !p.members[0].Leader || p.members[0].ID != me {
			return playErr(403, "only the leader may kick")
		}
		f.remove(p, req.Member)
	case protocol.PartyOpLeave:
		f.remove(p, me)
		if len(p.members) > 0 {
			p.members[0].Leader = true
		}
	}
	return protocol.PartyReply{Party: view(req.Code, p), Member: me}
}

func (f *fakePartyMatchmaker) remove(p *fakeParty, id string) {
	for i, m := range p.members {
		if m.ID == id {
			p.members = append(p.members[:i], p.members[i+1:]...)
		}
	}
	for tok, m := range p.tokens {
		if m == id {
			delete(p.tokens, tok)
		}
	}
}

func (f *fakePartyMatchmaker) serveRequest(m *nats.Msg) {
	for _, fb := range []protocol.Feedback{protocol.Acknowledged(), protocol.Progress(string(m.Data))} {
		b, _ := protocol.Marshal(fb)
		_ = m.Respond(b)
	}
	_ = m.Respond([]byte(f.ready))
	_ = m.Respond(nil)
}

// startPartyFrontDoor starts NATS, the fake matchmaker and a front door; it returns the front
// door's URL.
func startPartyFrontDoor(t *testing.T) string {
	t.Helper()
	e, err := natsembed.Start(natsembed.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	b64, _ := testToken(t, netcode.FormatLightyear017, "127.0.0.1:40123")
	f := &fakePartyMatchmaker{parties: map[string]*fakeParty{}, ready: readyJSON(t, b64, "127.0.0.1", 40123, "")}
	mm := bustest.Connect(t, e, "fake-matchmaker")
	if _, err := mm.Subscribe("matchmaker.party."+testGame+"."+testVersion, f.serveParty); err != nil {
		t.Fatal(err)
	}
	if _, err := mm.Subscribe("matchmaker.request."+testGame+"."+testVersion, f.serveRequest); err != nil {
		t.Fatal(err)
	}
	if err := mm.Flush(); err != nil {
		t.Fatal(err)
	}
	front, err := httpd.New(httpd.Config{SessionsPerMinute: -1, MaxStreamsPerIP: -1}, bustest.Connect(t, e, "httpd"), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(front)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = front.Shutdown(ctx)
		srv.Close()
	})
	return srv.URL
}

func TestPartyClientAgainstFrontDoor(t *testing.T) {
	t.Parallel()
	url := startPartyFrontDoor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pc, err := NewPartyClient(url+"/matchmaker/ws", testGame, testVersion, Options{ClientIP: "203.0.113.5"})
	if err != nil {
		t.Fatal(err)
	}

	leader, err := pc.Create(ctx)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if leader.Code != "K7QF2M" || leader.Member != "m1" || !leader.Leader() || leader.Token == "" {
		t.Fatalf("leader = %+v", leader)
	}
	if s := fmt.Sprint(leader) + fmt.Sprintf("%v", leader.LogValue()); strings.Contains(s, leader.Token) {
		t.Fatalf("String/LogValue show the token: %s", s)
	}
	member, err := pc.Join(ctx, " k7qf2m ") // typed by a player
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if member.Code != "K7QF2M" || member.Member != "m2" || member.Leader() || len(member.Party.Members) != 2 {
		t.Fatalf("member = %+v", member)
	}
	// A third player finds the party full.
	_, err = pc.Join(ctx, "K7QF2M")
	var pe *protocol.PlayError
	if !errors.Is(err, ErrPartyConflict) || !errors.As(err, &pe) || pe.Code != 409 || pe.Message != "the party is full" {
		t.Fatalf("Join a full party: %v", err)
	}
	// The leader sees both; the leader polls until there are two.
	p, err := pc.Wait(ctx, leader, func(p *protocol.Party) bool { return len(p.Members) == 2 })
	if err != nil || len(p.Members) != 2 || len(leader.Party.Members) != 2 {
		t.Fatalf("Wait: %+v %v", p, err)
	}
	// Only the leader kicks.
	if err := pc.Kick(ctx, member, leader.Member); !errors.Is(err, ErrPartyForbidden) || !errors.As(err, &pe) || pe.Code != 403 {
		t.Fatalf("member kicks the leader: %v", err)
	}
	if err := pc.Kick(ctx, leader, member.Member); err != nil || len(leader.Party.Members) != 1 {
		t.Fatalf("leader kicks: %v, party %+v", err, leader.Party)
	}
	// The kicked member's token no longer works.
	if _, err := pc.Get(ctx, member); !errors.Is(err, ErrPartyForbidden) {
		t.Fatalf("Get by a kicked member: %v", err)
	}
	if err := pc.Leave(ctx, leader); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	// Codes checked before anything is sent; unknown codes are the matchmaker's 404.
	if _, err := pc.Join(ctx, "K7QF2O"); !errors.Is(err, ErrPartyInvalid) {
		t.Fatalf("Join with a malformed code: %v", err)
	}
	if _, err := pc.Join(ctx, "ZZZZZZ"); !errors.Is(err, ErrPartyNotFound) || !errors.As(err, &pe) || pe.Message != "unknown party code" {
		t.Fatalf("Join an unknown party: %v", err)
	}
	// No matchmaker serves version 2.
	pc2, err := NewPartyClient(url, testGame, "2", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc2.Create(ctx); !errors.Is(err, ErrPartyUnavailable) || !errors.As(err, &pe) || pe.Code != 503 {
		t.Fatalf("Create without a matchmaker: %v", err)
	}
}

// A front door without party routes (an older httpd, or the Rust one) answers 404 text: a
// *StatusError, not a party error.
func TestPartyClientWithoutPartyRoutes(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	pc, err := NewPartyClient(srv.URL, testGame, testVersion, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = pc.Create(context.Background())
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 404 || !errors.Is(err, ErrConnect) || errors.Is(err, ErrPartyNotFound) {
		t.Fatalf("Create: %v", err)
	}
}

func TestPartyEndpoint(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"ws://127.0.0.1:3000/matchmaker/ws", "http://127.0.0.1:3000/matchmaker/party/g/1"},
		{"wss://mm.example/matchmaker/ws?client_ip=1.2.3.4", "https://mm.example/matchmaker/party/g/1"},
		{"http://h:3000", "http://h:3000/matchmaker/party/g/1"},
		{"https://h/prefix/matchmaker/", "https://h/prefix/matchmaker/party/g/1"},
		{"http://h/matchmaker/request", "http://h/matchmaker/party/g/1"},
		{"http://h/matchmaker/party", "http://h/matchmaker/party/g/1"},
		{"ftp://h", ""},
		{"http://h/elsewhere", ""},
		{"http:///x", ""},
	} {
		got, err := partyEndpoint(tt.in, "g", "1")
		if tt.want == "" {
			if !errors.Is(err, ErrInvalidURL) {
				t.Errorf("partyEndpoint(%q) = %q, %v; want ErrInvalidURL", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("partyEndpoint(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// Queue, props and party reach the matchmaker over both transports, in the documented JSON.
func TestRequestPlayTogetherOptions(t *testing.T) {
	t.Parallel()
	url := startPartyFrontDoor(t)
	party := &protocol.PartyRef{Code: "K7QF2M", Token: "dG9rZW4"}
	want := `{"client_ip":"203.0.113.5","game":"partygame","version":"1","queue":"duo","props":{"mode":"ctf","skill":1200},"party":{"code":"K7QF2M","token":"dG9rZW4"}}`
	for _, tr := range []Transport{TransportWebSocket, TransportHTTP} {
		t.Run(tr.String(), func(t *testing.T) {
			var seen []string
			s, err := Request(context.Background(), url, testGame, testVersion, Options{
				Transport: tr, ClientIP: "203.0.113.5", Timeout: 10 * time.Second,
				Queue: "duo", Props: protocol.Props{"skill": protocol.Num(1200), "mode": protocol.Str("ctf")}, Party: party,
				OnProgress: func(p Progress) {
					if p.Feedback != nil && p.Feedback.Kind == protocol.FeedbackProgressReport {
						seen = append(seen, p.Feedback.Text)
					}
				},
			})
			if err != nil {
				t.Fatalf("Request: %v", err)
			}
			if s.ServerAddr.String() != "127.0.0.1:40123" {
				t.Fatalf("session %v", s)
			}
			if len(seen) != 1 || seen[0] != want {
				t.Fatalf("the matchmaker got %q\nwant %s", seen, want)
			}
		})
	}
	// A plain request stays plain over both transports.
	for _, tr := range []Transport{TransportWebSocket, TransportHTTP} {
		var seen []string
		_, err := Request(context.Background(), url, testGame, testVersion, Options{Transport: tr, ClientIP: "203.0.113.5",
			OnProgress: func(p Progress) {
				if p.Feedback != nil && p.Feedback.Kind == protocol.FeedbackProgressReport {
					seen = append(seen, p.Feedback.Text)
				}
			}})
		if err != nil || len(seen) != 1 || seen[0] != `{"client_ip":"203.0.113.5","game":"partygame","version":"1"}` {
			t.Fatalf("%s plain request: %v, the matchmaker got %q", tr, err, seen)
		}
	}
	// Malformed play fields are refused before anything is sent.
	for _, o := range []Options{{Queue: "a b"}, {Props: protocol.Props{"a.b": protocol.Num(1)}}, {Party: &protocol.PartyRef{Code: "K7QF2M"}}} {
		if _, err := Request(context.Background(), url, testGame, testVersion, o); !errors.Is(err, protocol.ErrInvalidPlay) {
			t.Errorf("Request(%+v) = %v, want protocol.ErrInvalidPlay", o, err)
		}
	}
}
