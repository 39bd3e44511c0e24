package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
)

// requestChunked runs the request over POST /matchmaker/request/{game}/{version}.
func (r *requester) requestChunked(ctx context.Context, u string) (*Session, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, http.NoBody)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	for k, vs := range r.opts.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Accept", "application/json")
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
