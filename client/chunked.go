package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/bevygap-go/bevygap/protocol"
)

// requestChunked runs the request over POST /matchmaker/request/{game}/{version}.
func (r *requester) requestChunked(ctx context.Context, u string) (*Session, error) {
	var body io.Reader = http.NoBody // a plain request has no body, like the reference's
	play := r.opts.Queue != "" || len(r.opts.Props) > 0 || r.opts.Party != nil
	if play {
		b, err := protocol.Marshal(struct {
			Queue string             `json:"queue,omitempty"`
			Props protocol.Props     `json:"props,omitempty"`
			Party *protocol.PartyRef `json:"party,omitempty"`
		}{r.opts.Queue, r.opts.Props, r.opts.Party})
		if err != nil {
			return nil, fmt.Errorf("client: encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	for k, vs := range r.opts.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Accept", "application/json")
	if play {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := r.opts.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx, "connecting to the matchmaker")
		}
		return nil, fmt.Errorf("%w at %s: %w", ErrConnect, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp)
	}
	r.progress(Progress{State: StateAwaitingResponse, Message: "Requesting ..."})

	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), maxMessageBytes)
	sc.Split(new(feedbackSplitter).split)
	for sc.Scan() {
		s, final, err := r.handleMessage(sc.Bytes())
		if final {
			return s, err
		}
	}
	if ctx.Err() != nil {
		return nil, ctxError(ctx, "waiting for the matchmaker")
	}
	switch err := sc.Err(); {
	case err == nil:
		return nil, fmt.Errorf("%w: end of the response body", ErrStreamEnded)
	case errors.Is(err, bufio.ErrTooLong):
		return nil, fmt.Errorf("%w: a message is longer than %d bytes", ErrProtocol, maxMessageBytes)
	default:
		return nil, fmt.Errorf("%w: %w", ErrStreamEnded, err)
	}
}
