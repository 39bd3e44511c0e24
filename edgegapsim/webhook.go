package edgegapsim

import (
	"bytes"
	"context"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/logkey"
)

// webhookWorkers is the number of delivery goroutines; a session's webhooks always go through
// the same one, so they arrive in order.
const webhookWorkers = 4

// webhookQueue bounds the webhooks waiting per worker; beyond it they are dropped (and counted).
const webhookQueue = 1024

type webhookJob struct {
	url  string
	body []byte
	sid  string
}

// WebhookStats counts session webhooks.
type WebhookStats struct {
	Sent    uint64 `json:"sent"`    // answered with 2xx
	Failed  uint64 `json:"failed"`  // transport error or non-2xx answer
	Lost    uint64 `json:"lost"`    // dropped by the webhook_loss_rate fault
	Dropped uint64 `json:"dropped"` // dropped because the queue was full or the simulator closed
}

type webhookSender struct {
	ctx                         context.Context
	hc                          *http.Client
	timeout                     time.Duration
	log                         *slog.Logger
	queues                      [webhookWorkers]chan webhookJob
	wg                          sync.WaitGroup
	once                        sync.Once
	mu                          sync.Mutex // guards closing against enqueue
	closed                      bool
	sent, failed, lost, dropped atomic.Uint64
}

// newWebhookClient returns the default client for webhooks: net/http's default transport
// settings, keeping an idle connection per worker (net/http keeps 2 per host, so most POSTs of
// the 4 workers would open a new connection).
func newWebhookClient() *http.Client {
	dt, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return &http.Client{}
	}
	tr := dt.Clone()
	tr.MaxIdleConnsPerHost = webhookWorkers
	return &http.Client{Transport: tr}
}

func newWebhookSender(ctx context.Context, hc *http.Client, timeout time.Duration, log *slog.Logger) *webhookSender {
	w := &webhookSender{ctx: ctx, hc: hc, timeout: timeout, log: log}
	for i := range w.queues {
		w.queues[i] = make(chan webhookJob, webhookQueue)
		w.wg.Add(1)
		go w.run(w.queues[i])
	}
	return w
}

func (w *webhookSender) enqueue(j webhookJob) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		w.dropped.Add(1)
		return
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(j.sid))
	select {
	case w.queues[h.Sum32()%webhookWorkers] <- j:
	default:
		w.dropped.Add(1)
	}
}

func (w *webhookSender) run(q chan webhookJob) {
	defer w.wg.Done()
	for j := range q {
		if w.ctx.Err() != nil {
			w.dropped.Add(1)
			continue
		}
		w.post(j)
	}
}

func (w *webhookSender) post(j webhookJob) {
	ctx, cancel := context.WithTimeout(w.ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.url, bytes.NewReader(j.body))
	if err != nil {
		w.failed.Add(1)
		w.log.Warn("session webhook: bad URL", logkey.SessionID, j.sid, logkey.Err, err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.hc.Do(req)
	if err != nil {
		w.failed.Add(1)
		w.log.Warn("session webhook failed", logkey.SessionID, j.sid, logkey.Err, err)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		w.failed.Add(1)
		w.log.Warn("session webhook answered non-2xx", logkey.SessionID, j.sid, "status", resp.StatusCode)
		return
	}
	w.sent.Add(1)
}

func (w *webhookSender) close() {
	w.once.Do(func() {
		w.mu.Lock()
		w.closed = true
		for _, q := range w.queues {
			close(q)
		}
		w.mu.Unlock()
	})
}

func (w *webhookSender) wait() { w.wg.Wait() }

func (w *webhookSender) stats() WebhookStats {
	return WebhookStats{Sent: w.sent.Load(), Failed: w.failed.Load(), Lost: w.lost.Load(),
		Dropped: w.dropped.Load()}
}

// webhookLocked queues the session webhook for sess's current state, if it has a webhook URL.
// Caller holds s.mu.
func (s *Simulator) webhookLocked(sess *session) {
	if sess.webhookURL == "" {
		return
	}
	if s.roll(s.faults.WebhookLossRate) {
		s.hooks.lost.Add(1)
		s.log.Info("session webhook lost (injected fault)", logkey.SessionID, sess.id)
		return
	}
	body, err := edgegap.AppendJSON(make([]byte, 0, 512), s.summaryView(sess, true)) // json.Marshal's bytes
	if err != nil {
		return
	}
	s.hooks.enqueue(webhookJob{url: sess.webhookURL, body: body, sid: sess.id})
}
