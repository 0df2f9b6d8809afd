package flags

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// WatchdogConfig configures a Watchdog. Only Migration is required.
type WatchdogConfig struct {
	// Migration is the migration watched. Required.
	Migration string
	// Window is the span the rates are measured over. Default 1m.
	Window time.Duration
	// MismatchRate is the share of shadow reads that may mismatch (0.05 = 5%); a higher rate
	// triggers a rollback. Default 0.05; a negative value turns this check off.
	MismatchRate float64
	// ErrorRate is the share of new-store operations that may fail. Default 0.05; a negative
	// value turns this check off.
	ErrorRate float64
	// MinSamples is how many shadow reads (or new-store operations) the window must hold before
	// its rate counts. Default 50.
	MinSamples int64
	// CheckInterval is how often Run checks the rates. Default 1s.
	CheckInterval time.Duration
	// Logger receives the watchdog's decisions and errors. Default: discarded.
	Logger *slog.Logger
	// Now is the time source the window's buckets follow. Default time.Now.
	Now func() time.Time
}

// Watchdog defaults.
const (
	DefaultWatchdogWindow = time.Minute
	DefaultMismatchRate   = 0.05
	DefaultErrorRate      = 0.05
	DefaultMinSamples     = 50
	DefaultCheckInterval  = time.Second
)

// watchdogBuckets is how many slices a window is cut into; the measured span is between
// (buckets-1)/buckets of the window and the whole window.
const watchdogBuckets = 10

// Watchdog rolls a migration back on its own when the new store misbehaves: when, over the
// window, the share of shadow reads that mismatched or of new-store operations that failed
// exceeds its limit with at least MinSamples behind it. It acts only in the phases whose Policy
// runs PathWatchdog (dual and cutover), through Manager.Rollback (one step back), so the
// rollback is audited with the numbers as its reason; after acting it starts a new window.
//
// ShadowRead and NewStoreOp only add to atomic counters and may be called from any number of
// goroutines on hot paths.
type Watchdog struct {
	m    *Manager
	cfg  WatchdogConfig
	who  string
	span time.Duration // one bucket

	buckets [watchdogBuckets]wdBucket
	cur     atomic.Pointer[wdBucket]
	mu      sync.Mutex // serializes rotate and Check
	epoch   int64      // absolute index (time / span) of the current bucket
}

type wdBucket struct {
	reads, mismatches, ops, failures atomic.Int64
}

func (b *wdBucket) reset() {
	b.reads.Store(0)
	b.mismatches.Store(0)
	b.ops.Store(0)
	b.failures.Store(0)
}

// NewWatchdog returns a watchdog for cfg.Migration acting through m.
func NewWatchdog(m *Manager, cfg WatchdogConfig) (*Watchdog, error) {
	if m == nil {
		return nil, errors.New("watchdog: nil manager")
	}
	if cfg.Migration == "" {
		return nil, errors.New("watchdog: no migration given")
	}
	if cfg.Window == 0 {
		cfg.Window = DefaultWatchdogWindow
	}
	if cfg.MismatchRate == 0 {
		cfg.MismatchRate = DefaultMismatchRate
	}
	if cfg.ErrorRate == 0 {
		cfg.ErrorRate = DefaultErrorRate
	}
	if cfg.MinSamples == 0 {
		cfg.MinSamples = DefaultMinSamples
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	switch {
	case cfg.Window < watchdogBuckets*time.Millisecond:
		return nil, fmt.Errorf("watchdog for %s: window %s: want at least %s", cfg.Migration, cfg.Window, watchdogBuckets*time.Millisecond)
	case cfg.MismatchRate > 1:
		return nil, fmt.Errorf("watchdog for %s: mismatch rate %g: want a share from 0 to 1 (0.05 = 5%%)", cfg.Migration, cfg.MismatchRate)
	case cfg.ErrorRate > 1:
		return nil, fmt.Errorf("watchdog for %s: error rate %g: want a share from 0 to 1 (0.05 = 5%%)", cfg.Migration, cfg.ErrorRate)
	case cfg.MinSamples < 0:
		return nil, fmt.Errorf("watchdog for %s: min samples %d: want 0 or more", cfg.Migration, cfg.MinSamples)
	case cfg.CheckInterval < 0:
		return nil, fmt.Errorf("watchdog for %s: check interval %s: want more than 0", cfg.Migration, cfg.CheckInterval)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	host, _ := os.Hostname()
	w := &Watchdog{m: m, cfg: cfg, who: fmt.Sprintf("tandem watchdog %s:%d", host, os.Getpid()), span: cfg.Window / watchdogBuckets}
	w.epoch = cfg.Now().UnixNano() / int64(w.span)
	w.cur.Store(&w.buckets[w.epoch%watchdogBuckets])
	return w, nil
}

// ShadowRead counts one shadow-read comparison and whether it mismatched.
func (w *Watchdog) ShadowRead(mismatch bool) {
	b := w.cur.Load()
	b.reads.Add(1)
	if mismatch {
		b.mismatches.Add(1)
	}
}

// NewStoreOp counts one operation on the new store and whether it failed.
func (w *Watchdog) NewStoreOp(failed bool) {
	b := w.cur.Load()
	b.ops.Add(1)
	if failed {
		b.failures.Add(1)
	}
}

// Run checks the rates every CheckInterval until ctx ends. Errors (a catalog outage, a
// rollback that lost a race) are logged and the next check tries again.
func (w *Watchdog) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := w.Check(ctx); err != nil && ctx.Err() == nil {
				w.cfg.Logger.Warn("watchdog check failed", "migration", w.cfg.Migration, "err", err)
			}
		}
	}
}

// rotate moves the current bucket to the present, clearing every bucket it passes. Counts that
// land in a bucket being cleared are lost, which only makes a rate a little less sure.
func (w *Watchdog) rotate() {
	now := w.cfg.Now().UnixNano() / int64(w.span)
	if now <= w.epoch {
		return
	}
	for i := max(w.epoch+1, now-watchdogBuckets+1); i <= now; i++ {
		w.buckets[i%watchdogBuckets].reset()
	}
	w.cur.Store(&w.buckets[now%watchdogBuckets])
	w.epoch = now
}

// counts sums the window.
func (w *Watchdog) counts() (reads, mismatches, ops, failures int64) {
	for i := range w.buckets {
		b := &w.buckets[i]
		reads += b.reads.Load()
		mismatches += b.mismatches.Load()
		ops += b.ops.Load()
		failures += b.failures.Load()
	}
	return
}

// Reset starts a new, empty window.
func (w *Watchdog) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.clear()
}

// Check measures the window once and rolls back if a rate is over its limit in phase dual or
// cutover; it reports whether it rolled back. Outside those phases it only clears the window,
// so samples taken then never count later. Run calls it; tests may call it directly.
func (w *Watchdog) Check(ctx context.Context) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rotate()
	v, err := w.m.Get(ctx, w.cfg.Migration)
	if err != nil {
		return false, fmt.Errorf("watchdog for %s: reading flags: %w", w.cfg.Migration, err)
	}
	if !PolicyFor(v).Runs(PathWatchdog) {
		w.clear()
		return false, nil
	}
	reads, mismatches, ops, failures := w.counts()
	var why string
	switch {
	case w.cfg.MismatchRate >= 0 && reads >= w.cfg.MinSamples && reads > 0 && rate(mismatches, reads) > w.cfg.MismatchRate:
		why = fmt.Sprintf("shadow-read mismatch rate %.1f%% > %.1f%% over %s (%d reads)",
			100*rate(mismatches, reads), 100*w.cfg.MismatchRate, w.cfg.Window, reads)
	case w.cfg.ErrorRate >= 0 && ops >= w.cfg.MinSamples && ops > 0 && rate(failures, ops) > w.cfg.ErrorRate:
		why = fmt.Sprintf("new-store error rate %.1f%% > %.1f%% over %s (%d operations)",
			100*rate(failures, ops), 100*w.cfg.ErrorRate, w.cfg.Window, ops)
	default:
		return false, nil
	}
	after, err := w.m.Rollback(ctx, w.cfg.Migration, "", w.who, why)
	if err != nil {
		return false, fmt.Errorf("watchdog for %s: rolling back (%s): %w", w.cfg.Migration, why, err)
	}
	w.cfg.Logger.Warn("watchdog rolled back", "migration", w.cfg.Migration, "from", v.Phase, "to", after.Phase, "why", why)
	w.clear()
	return true, nil
}

func (w *Watchdog) clear() {
	for i := range w.buckets {
		w.buckets[i].reset()
	}
}

func rate(n, of int64) float64 { return float64(n) / float64(of) }
