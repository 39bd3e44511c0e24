package gameserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/backoff"
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/protocol"
)

// boot does the once-per-process work: store the certificate digest and publish the deployment
// context, concurrently, each retried until done. It closes a.ready when both succeeded and returns
// an error matching ErrConfig if the context API rejects the deployment's URL or token.
func (a *Agent) boot(ctx context.Context) error {
	var wg sync.WaitGroup
	var digestErr, contextErr error
	if a.hasDigest() {
		wg.Go(func() {
			digestErr = a.storeCertDigest(ctx)
			if digestErr == nil {
				close(a.digestStored)
			}
		})
	}
	wg.Go(func() { contextErr = a.publishContext(ctx) })
	wg.Wait()
	if digestErr == nil && contextErr == nil {
		a.log.Info("game server registered with bevygap (context published, cert digest stored)")
		close(a.ready)
		return nil
	}
	if digestErr != nil && ctx.Err() == nil {
		a.log.Error("could not store the cert digest", logkey.Err, digestErr)
	}
	if contextErr != nil && ctx.Err() == nil {
		a.log.Error("could not publish the deployment context", logkey.Err, contextErr)
	}
	return errors.Join(digestErr, contextErr)
}

// publishContext fetches the deployment context and publishes it on gameserver.contexts.
func (a *Agent) publishContext(ctx context.Context) error {
	body, err := a.fetchContext(ctx)
	if err != nil {
		return err
	}
	return a.retry(ctx, "publish deployment context", func(ctx context.Context) error {
		if !a.nc.IsConnected() {
			// Publishing now would only fill nats.go's reconnect buffer and give no answer.
			return errNotConnected
		}
		if err := a.nc.Publish(protocol.SubjectGameserverContexts, body); err != nil {
			return fmt.Errorf("publish %s: %w", protocol.SubjectGameserverContexts, err)
		}
		fctx, cancel := context.WithTimeout(ctx, a.cfg.OpTimeout)
		defer cancel()
		if err := a.nc.FlushWithContext(fctx); err != nil {
			return fmt.Errorf("flush %s: %w", protocol.SubjectGameserverContexts, err)
		}
		a.log.Info("deployment context published", logkey.Subject, protocol.SubjectGameserverContexts, "bytes", len(body))
		return nil
	})
}

// fetchContext GETs ARBITRIUM_CONTEXT_URL (through the edgegap client, which times out and
// retries each call) until it answers, and returns the context as published on
// gameserver.contexts. Rejections (4xx other than 408/429) are configuration errors.
func (a *Agent) fetchContext(ctx context.Context) ([]byte, error) {
	arb := a.cfg.Arbitrium
	var body []byte
	err := a.retry(ctx, "fetch deployment context", func(ctx context.Context) error {
		dc, err := a.eg.GetContext(ctx, arb.ContextURL, arb.ContextToken)
		if err != nil {
			var ae *edgegap.APIError
			if errors.As(err, &ae) && ae.StatusCode >= 400 && ae.StatusCode < 500 &&
				ae.StatusCode != http.StatusRequestTimeout && ae.StatusCode != http.StatusTooManyRequests {
				return backoff.Permanent(fmt.Errorf("%w: context API rejected ARBITRIUM_CONTEXT_URL/ARBITRIUM_CONTEXT_TOKEN: %w", ErrConfig, err))
			}
			var se *json.SyntaxError
			var te *json.UnmarshalTypeError
			if errors.As(err, &se) || errors.As(err, &te) {
				return backoff.Permanent(fmt.Errorf("context API answered something that is not a deployment: %w", err))
			}
			return err
		}
		b, err := contextJSON(dc.Raw)
		if err != nil {
			return backoff.Permanent(err)
		}
		body = b
		a.mu.Lock()
		d := dc.Deployment
		a.deployment = &d
		a.mu.Unlock()
		a.log.Info("deployment context fetched", logkey.RequestID, d.RequestID, "public_ip", d.PublicIP, "fqdn", d.FQDN)
		return nil
	})
	return body, err
}

// contextJSON returns the bytes published on gameserver.contexts for a context body: the same
// JSON object, compact, with the keys of every object in sorted order and numbers exactly as
// received. That is what the Rust plugin publishes (it re-serialises the object with serde_json,
// whose default map is sorted). It fails unless raw is one JSON object.
func contextJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("gameserver: context is not a JSON object: %w", err)
	}
	if m == nil {
		return nil, errors.New("gameserver: context is not a JSON object: null")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("gameserver: context has data after its JSON object")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("gameserver: encode context: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
