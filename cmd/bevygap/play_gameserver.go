package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/netcode"
)

// playReplyTimeout is how long "bevygap play" waits for each packet to come back.
const playReplyTimeout = time.Second

// playPayloadPrefix starts every payload "bevygap play" sends; the sequence number follows.
const playPayloadPrefix = "bevygap-play seq="

// playGameServer connects to the game server of sess over transport ("" = auto: WebTransport
// pinned to the session's certificate digest when it has one, else UDP; see
// client.Session.Dial), sends packets one at a time and waits up to playReplyTimeout for each to be echoed back (the Go example game server
// echoes payloads; a server that does not just yields no round-trip times), prints one line
// per packet to out, and disconnects.
//
// It fails when the connection cannot be established (denied, timed out, token expired) or
// ends during the exchange (server disconnect or timeout). Unanswered packets are not a
// failure: they are counted as lost, and a server that sent nothing back at all (it does not
// echo) is reported as "connected; the server sent no replies" instead of a loss figure.
func playGameServer(ctx context.Context, sess *client.Session, transport netcode.Transport, packets int, out io.Writer) (*playGameResult, error) {
	if transport == "" {
		transport = sess.GameTransport()
	}
	res := &playGameResult{RTTMS: []float64{}, Transport: transport.String()}
	switch {
	case transport == netcode.TransportWebTransport && sess.CertDigest != "":
		fmt.Fprintf(out, "Connecting to %s over netcode WebTransport, certificate pinned to %s ...\n", sess.ServerAddr, sess.CertDigest)
	case transport == netcode.TransportWebTransport:
		fmt.Fprintf(out, "Connecting to %s over netcode WebTransport (no cert_digest: certificate not checked) ...\n", sess.ServerAddr)
	default:
		fmt.Fprintf(out, "Connecting to %s over netcode UDP ...\n", sess.ServerAddr)
	}
	start := time.Now()
	c, err := sess.Dial(ctx, netcode.ClientConfig{Transport: transport, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return res, fmt.Errorf("connecting: %w", err)
	}
	defer c.Close()
	res.Connected = true
	res.ConnectMS = playMillis(time.Since(start))
	fmt.Fprintf(out, "Connected to %s from %s in %s (client id %d)\n",
		c.ServerAddr(), c.LocalAddr(), playRound(time.Since(start)), c.ClientID())

	others := 0 // payloads from the server that were not the awaited echo (game traffic, late echoes)
	for seq := 1; seq <= packets; seq++ {
		payload := []byte(playPayloadPrefix + strconv.Itoa(seq))
		sent := time.Now()
		if err := c.Send(payload); err != nil {
			return res, fmt.Errorf("sending packet %d: %w", seq, err)
		}
		res.PacketsSent++
		rtt, err := awaitEcho(ctx, c, payload, sent, &others)
		switch {
		case err == nil:
			res.PacketsReceived++
			res.RTTMS = append(res.RTTMS, playMillis(rtt))
			fmt.Fprintf(out, "reply %d/%d from %s: %d bytes, rtt %.3f ms\n", seq, packets, c.ServerAddr(), len(payload), playMillis(rtt))
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			fmt.Fprintf(out, "no reply %d/%d within %s\n", seq, packets, playReplyTimeout)
		default:
			return res, fmt.Errorf("waiting for packet %d: %w", seq, err)
		}
	}
	summarizeRTT(res)
	fmt.Fprintln(out, playSummary(res, others))
	if err := c.Close(); err != nil {
		return res, fmt.Errorf("disconnecting: %w", err)
	}
	fmt.Fprintln(out, "Disconnected.")
	return res, nil
}

// playSummary is the last line of the exchange: the loss figure and round-trip times when the
// server echoed anything; when it echoed nothing, that the connection worked and what the
// server sent instead, since a server that does not echo loses nothing.
func playSummary(res *playGameResult, others int) string {
	sent, received := res.PacketsSent, res.PacketsReceived
	switch {
	case received > 0:
		return fmt.Sprintf("%d packets sent, %d received, %.0f%% loss; rtt min/avg/max = %.3f/%.3f/%.3f ms",
			sent, received, 100*float64(sent-received)/float64(sent), res.MinMS, res.AvgMS, res.MaxMS)
	case others > 0:
		return fmt.Sprintf("%d packets sent; connected; the server sent %d packets, none an echo of ours within %s (so no round-trip times)", sent, others, playReplyTimeout)
	default:
		return fmt.Sprintf("%d packets sent; connected; the server sent no replies (it does not echo, so no round-trip times)", sent)
	}
}

// awaitEcho waits for payload to come back and returns the round-trip time since sent. Other
// payloads (late echoes, game traffic) are skipped and counted in *others. It returns
// context.DeadlineExceeded when nothing matching came within playReplyTimeout.
func awaitEcho(ctx context.Context, c *netcode.Client, payload []byte, sent time.Time, others *int) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, playReplyTimeout)
	defer cancel()
	for {
		got, err := c.Recv(ctx)
		if err != nil {
			return 0, err
		}
		if bytes.Equal(got, payload) {
			return time.Since(sent), nil
		}
		*others++
	}
}

// summarizeRTT fills the min/avg/max of res from its round-trip times.
func summarizeRTT(res *playGameResult) {
	if len(res.RTTMS) == 0 {
		return
	}
	sum := 0.0
	for _, v := range res.RTTMS {
		sum += v
	}
	res.MinMS, res.MaxMS = slices.Min(res.RTTMS), slices.Max(res.RTTMS)
	res.AvgMS = float64(int64(sum/float64(len(res.RTTMS))*1000)) / 1000
}
