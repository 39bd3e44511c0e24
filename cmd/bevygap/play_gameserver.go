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

// playGameServer connects to the game server of sess over netcode UDP, sends packets one at a
// time and waits up to playReplyTimeout for each to be echoed back (the Go example game server
// echoes payloads; a server that does not just yields no round-trip times), prints one line
// per packet to out, and disconnects.
//
// It fails when the connection cannot be established (denied, timed out, token expired) or
// ends during the exchange (server disconnect or timeout). Unanswered packets are not a
// failure: they are counted as lost.
func playGameServer(ctx context.Context, sess *client.Session, packets int, out io.Writer) (*playGameResult, error) {
	res := &playGameResult{RTTMS: []float64{}}
	fmt.Fprintf(out, "Connecting to %s over netcode UDP ...\n", sess.ServerAddr)
	start := time.Now()
	c, err := sess.Dial(ctx, netcode.ClientConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return res, fmt.Errorf("connecting: %w", err)
	}
	defer c.Close()
	res.Connected = true
	res.ConnectMS = playMillis(time.Since(start))
	fmt.Fprintf(out, "Connected to %s from %s in %s (client id %d)\n",
		c.ServerAddr(), c.LocalAddr(), playRound(time.Since(start)), c.ClientID())

	for seq := 1; seq <= packets; seq++ {
		payload := []byte(playPayloadPrefix + strconv.Itoa(seq))
		sent := time.Now()
		if err := c.Send(payload); err != nil {
			return res, fmt.Errorf("sending packet %d: %w", seq, err)
		}
		res.PacketsSent++
		rtt, err := awaitEcho(ctx, c, payload, sent)
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
	fmt.Fprintf(out, "%d packets sent, %d received, %.0f%% loss", res.PacketsSent, res.PacketsReceived,
		100*float64(res.PacketsSent-res.PacketsReceived)/float64(res.PacketsSent))
	if res.PacketsReceived > 0 {
		fmt.Fprintf(out, "; rtt min/avg/max = %.3f/%.3f/%.3f ms", res.MinMS, res.AvgMS, res.MaxMS)
	}
	fmt.Fprintln(out)
	if err := c.Close(); err != nil {
		return res, fmt.Errorf("disconnecting: %w", err)
	}
	fmt.Fprintln(out, "Disconnected.")
	return res, nil
}

// awaitEcho waits for payload to come back and returns the round-trip time since sent. Other
// payloads (late echoes, game traffic) are skipped. It returns context.DeadlineExceeded when
// nothing matching came within playReplyTimeout.
func awaitEcho(ctx context.Context, c *netcode.Client, payload []byte, sent time.Time) (time.Duration, error) {
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
