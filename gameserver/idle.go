package gameserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/backoff"
	"github.com/bevygap-go/bevygap/internal/logkey"
)

// errNoLongerIdle aborts a self-stop because a client arrived meanwhile.
var errNoLongerIdle = errors.New("a client arrived; not idle any more")

// idleSelfDestruct deletes this deployment through ARBITRIUM_DELETE_URL once nobody has been
// connected (or authorized) for IdleTimeout. It is the game server's own defence against leaked
// deployments, in case the matchmaker's session bookkeeping failed. It calls the delete URL at
// most once successfully, then returns; Edgegap then stops the container.
func (a *Agent) idleSelfDestruct(ctx context.Context) {
	timer := time.NewTimer(a.cfg.IdleTimeout)
	defer timer.Stop()
	for {
		a.mu.Lock()
		n, since := len(a.connected), a.emptySince
		a.mu.Unlock()
		timer.Stop()
		if n == 0 {
			left := time.Until(since.Add(a.cfg.IdleTimeout))
			if left <= 0 {
				if a.selfStop(ctx) {
					return
				}
				if ctx.Err() != nil {
					return
				}
				continue // a client arrived: wait for the server to be empty again
			}
			timer.Reset(left)
		}
		select {
		case <-ctx.Done():
			return
		case <-a.activity:
		case <-timer.C:
		}
	}
}

// selfStop calls the delete URL, retrying transient failures; it reports whether the deployment
// is (being) deleted, or the attempt was given up for good.
func (a *Agent) selfStop(ctx context.Context) bool {
	arb := a.cfg.Arbitrium
	a.log.Warn("game server idle; deleting its own deployment", "idle_for", a.cfg.IdleTimeout, logkey.RequestID, arb.RequestID)
	err := a.retry(ctx, "self-stop deployment", func(ctx context.Context) error {
		if a.Connected() > 0 {
			return backoff.Permanent(errNoLongerIdle)
		}
		_, err := a.eg.SelfStop(ctx, arb.DeleteURL, arb.DeleteToken)
		if err == nil || errors.Is(err, edgegap.ErrNotFound) {
			return nil
		}
		var ae *edgegap.APIError
		if errors.As(err, &ae) && ae.StatusCode >= 400 && ae.StatusCode < 500 &&
			ae.StatusCode != http.StatusRequestTimeout && ae.StatusCode != http.StatusTooManyRequests {
			return backoff.Permanent(fmt.Errorf("%w: delete URL rejected: %w", ErrConfig, err))
		}
		return err
	}, logkey.RequestID, arb.RequestID)
	switch {
	case err == nil:
		a.log.Warn("deployment deletion requested; Edgegap will stop this game server", logkey.RequestID, arb.RequestID)
		return true
	case errors.Is(err, errNoLongerIdle):
		a.log.Info("self-stop cancelled: a client arrived")
		return false
	case ctx.Err() != nil:
		return false
	default:
		a.log.Error("self-stop failed; giving up", logkey.Err, err)
		return true
	}
}
