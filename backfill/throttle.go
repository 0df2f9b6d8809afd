package backfill

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
)

// Adaptive limiter settings: back off to half the observed throughput when the target shows
// strain; recover by 10% a second; stop limiting once the limit is far above what is copied.
const (
	adaptiveBackoff  = 0.5
	adaptiveRecovery = 1.10
	adaptiveFloor    = 1.0 // documents/s
)

// throttle is the one decision every worker of this process waits on (gh-ost's throttler):
// the control state from the catalog (paused, the backfill's rates shared among its running
// processes) and the adaptive limit from the target's health. Collectors feed it (observe,
// the control poll); run decides; wait only obeys.
type throttle struct {
	cfg *Config
	m   *migrationMetrics

	mu     sync.Mutex
	paused bool
	wake   chan struct{} // closed and replaced whenever the decision changes
	docs   *rate.Limiter
	bytes  *rate.Limiter

	// collected since the last decision
	wrote, wroteBytes int64
	writes, failures  int
	throttled         int
	maxLatency        time.Duration

	adaptive float64 // documents/s; +Inf when not limiting
	control  catalog.BackfillControl
	state    string
	rates    rateMeter
}

func newThrottle(cfg *Config, m *migrationMetrics) *throttle {
	return &throttle{
		cfg: cfg, m: m, wake: make(chan struct{}),
		docs: rate.NewLimiter(rate.Inf, 1), bytes: rate.NewLimiter(rate.Inf, 1),
		adaptive: math.Inf(1), state: "copying",
	}
}

// wait blocks until the decision lets a chunk of docs documents and size bytes through: not
// while paused, and at the rates. A pause or resume wakes it at once; a new rate applies from
// the next piece it takes (a fifth of a second's worth of tokens), so both apply within one
// poll.
func (t *throttle) wait(ctx context.Context, docs, size int) error {
	needDocs, needBytes := docs, size
	for {
		t.mu.Lock()
		paused, wake := t.paused, t.wake
		t.mu.Unlock()
		if paused {
			select {
			case <-wake:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var changed bool
		var err error
		if needDocs, changed, err = take(ctx, t.docs, needDocs, wake); err != nil {
			return err
		} else if changed {
			continue
		}
		if needBytes, changed, err = take(ctx, t.bytes, needBytes, wake); err != nil {
			return err
		} else if changed {
			continue
		}
		return nil
	}
}

// take takes n tokens from lim in pieces of at most its burst, and returns what is left to take
// when the decision changed first.
func take(ctx context.Context, lim *rate.Limiter, n int, wake <-chan struct{}) (int, bool, error) {
	for n > 0 {
		piece := n
		if lim.Limit() != rate.Inf {
			piece = min(n, max(lim.Burst(), 1))
		}
		r := lim.ReserveN(time.Now(), piece)
		if !r.OK() {
			return n, true, nil // the burst changed under us
		}
		if d := r.Delay(); d > 0 {
			tm := time.NewTimer(d)
			select {
			case <-tm.C:
			case <-wake:
				tm.Stop()
				r.Cancel()
				return n, true, nil
			case <-ctx.Done():
				tm.Stop()
				r.Cancel()
				return n, false, ctx.Err()
			}
		}
		n -= piece
	}
	return 0, false, nil
}

// observe collects one BulkWrite's outcome.
func (t *throttle) observe(latency time.Duration, docs, size int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.writes++
	t.maxLatency = max(t.maxLatency, latency)
	if err != nil {
		t.failures++
		if isThrottling(err) {
			t.throttled++
		}
		return
	}
	t.wrote += int64(docs)
	t.wroteBytes += int64(size)
	t.rates.add(time.Now(), docs, size)
	t.m.writeLatency.Observe(latency.Seconds())
}

// isThrottling reports DynamoDB's throttling errors (the AWS SDK's retries exhausted) and
// items left unprocessed by the store's own retries.
func isThrottling(err error) bool {
	if errors.Is(err, adapters.ErrRetriesExhausted) {
		return true
	}
	var ce interface{ ErrorCode() string }
	if errors.As(err, &ce) {
		switch ce.ErrorCode() {
		case "ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded":
			return true
		}
	}
	return strings.Contains(err.Error(), "ProvisionedThroughputExceededException") || strings.Contains(err.Error(), "ThrottlingException")
}

// run is the decision loop: every Poll it reads the control state and the other runners from
// the catalog (keeping the last ones while the catalog is away), folds in what the collectors
// saw, sets the limiters and wakes the waiters when anything changed, and reports this
// process's state and rates.
func (t *throttle) run(ctx context.Context, b *Backfill) {
	tick := time.NewTicker(t.cfg.Poll)
	defer tick.Stop()
	last := time.Now()
	for {
		t.decide(ctx, b, time.Since(last))
		last = time.Now()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (t *throttle) decide(ctx context.Context, b *Backfill, window time.Duration) {
	pctx, cancel := context.WithTimeout(ctx, t.cfg.Poll)
	defer cancel()
	control, cerr := b.cfg.Catalog.BackfillPlan(pctx, b.cfg.Migration)
	runners := 1
	if cerr == nil {
		if rs, err := b.cfg.Catalog.BackfillRunners(pctx, b.cfg.Migration); err == nil {
			runners = activeRunners(rs, b.cfg.Owner, time.Now(), staleAfter(t.cfg.Poll))
		}
	}

	t.mu.Lock()
	if cerr == nil {
		t.control = control.Control
	}
	ctl := t.control
	achieved := float64(t.wrote) / max(window.Seconds(), 1e-3)
	strained := t.failures > 0 || t.throttled > 0 || t.maxLatency > t.cfg.MaxLatency
	t.adaptive = adapt(t.adaptive, achieved, strained, t.writes > 0, window)
	t.wrote, t.wroteBytes, t.writes, t.failures, t.throttled, t.maxLatency = 0, 0, 0, 0, 0, 0

	docsLimit := math.Inf(1)
	if ctl.Rate > 0 {
		docsLimit = ctl.Rate / float64(runners)
	}
	docsLimit = min(docsLimit, t.adaptive)
	bytesLimit := math.Inf(1)
	if ctl.BytesRate > 0 {
		bytesLimit = ctl.BytesRate / float64(runners)
	}
	// Only a pause or resume wakes the waiters: a new rate applies to the next piece a waiter
	// takes (pieces are a fifth of a second's worth), and waking them on every change of the
	// adaptive limit, which changes at every tick while it recovers, would cancel their
	// reservations before any came due.
	setLimit(t.docs, docsLimit)
	setLimit(t.bytes, bytesLimit)
	changed := t.paused != ctl.Paused
	t.paused = ctl.Paused
	if changed {
		close(t.wake)
		t.wake = make(chan struct{})
	}
	switch {
	case t.paused:
		t.state = "paused"
	case !math.IsInf(t.adaptive, 1) && t.adaptive <= docsLimit:
		t.state = "throttled"
	case b.leases.count() == 0:
		t.state = "waiting"
	default:
		t.state = "copying"
	}
	docsPS, bytesPS := t.rates.rate(time.Now())
	state := t.state
	adaptive := t.adaptive
	t.mu.Unlock()

	m := t.m
	m.paused.Set(boolGauge(ctl.Paused))
	m.rateLimit.WithLabelValues().Set(docsLimit)
	m.adaptiveLimit.WithLabelValues().Set(adaptive)
	m.docsPerSec.Set(docsPS)
	if cerr != nil {
		return // keep the last decision; the catalog is away
	}
	limit := docsLimit
	if math.IsInf(limit, 1) {
		limit = 0
	}
	_ = b.cfg.Catalog.ReportBackfillRunner(pctx, catalog.BackfillRunner{
		Migration: b.cfg.Migration, Owner: b.cfg.Owner, State: state, Workers: t.cfg.Workers,
		Leases: b.leases.count(), DocsPerSec: docsPS, BytesPerSec: bytesPS, RateLimit: limit,
	})
}

// adapt is the adaptive limit after a window: on strain, half of what was achieved (or of the
// limit, if lower; 100 documents/s when nothing is known), at least adaptiveFloor; otherwise
// 10% more a second, and no limit once it is far above the throughput achieved with writes
// going on.
func adapt(limit, achieved float64, strained, wrote bool, window time.Duration) float64 {
	switch {
	case strained:
		base := achieved
		if base <= 0 || (!math.IsInf(limit, 1) && limit < base) {
			base = limit
		}
		if math.IsInf(base, 1) || base <= 0 {
			base = 100
		}
		return max(adaptiveFloor, base*adaptiveBackoff)
	case math.IsInf(limit, 1):
		return limit
	}
	limit *= math.Pow(adaptiveRecovery, window.Seconds())
	if wrote && achieved > 0 && limit > 4*achieved && limit > 1000 {
		return math.Inf(1)
	}
	return limit
}

// setLimit sets lim's rate (and a burst of a fifth of a second's worth) and reports a change.
func setLimit(lim *rate.Limiter, r float64) bool {
	want := rate.Limit(r)
	if math.IsInf(r, 1) {
		want = rate.Inf
	}
	if lim.Limit() == want {
		return false
	}
	lim.SetLimit(want)
	if want != rate.Inf {
		lim.SetBurst(max(1, int(r/5)))
	}
	return true
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// staleAfter is how old a runner report may be and still count as running.
func staleAfter(poll time.Duration) time.Duration { return max(3*poll, 3*time.Second) }

// activeRunners counts the processes copying: fresh reports holding leases, this one always.
func activeRunners(rs []catalog.BackfillRunner, self string, now time.Time, stale time.Duration) int {
	n := 1
	for _, r := range rs {
		if r.Owner != self && r.Leases > 0 && now.Sub(r.UpdatedAt) < stale {
			n++
		}
	}
	return n
}

// rateMeter measures documents and bytes per second over the last 10 seconds.
type rateMeter struct {
	buckets [10]struct {
		sec         int64
		docs, bytes int64
	}
}

func (m *rateMeter) add(now time.Time, docs, size int) {
	s := now.Unix()
	b := &m.buckets[s%int64(len(m.buckets))]
	if b.sec != s {
		b.sec, b.docs, b.bytes = s, 0, 0
	}
	b.docs += int64(docs)
	b.bytes += int64(size)
}

func (m *rateMeter) rate(now time.Time) (docs, bytes float64) {
	s := now.Unix()
	for _, b := range m.buckets {
		if b.sec > s-int64(len(m.buckets)) && b.sec <= s {
			docs += float64(b.docs)
			bytes += float64(b.bytes)
		}
	}
	return docs / float64(len(m.buckets)), bytes / float64(len(m.buckets))
}
