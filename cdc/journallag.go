package cdc

import (
	"sync"
	"time"

	"github.com/tandemdb/tandem/adapters"
)

// lagTracker works out how far a journal worker is behind, per migration, from the batches it
// handles. For each partition it keeps the time (At) of the newest entry converged, whether
// more records followed that batch when it was fetched (adapters.JournalPosition.Behind), and
// the oldest entry of each migration in a batch that has not yet succeeded. A migration's lag
// is the largest over the partitions it was seen in of:
//
//   - now − At of its oldest entry in a batch not yet converged (the batch is being retried,
//     the new store being down, say);
//   - else, when the partition was behind, now − At of the newest entry converged there;
//   - else 0: caught up.
//
// Only migrations marked known (their engine was found) are reported, so that entries of an
// unknown migration leave no lag records behind.
//
// A partition that is behind or has a batch pending and has not been touched for forgetAfter is
// forgotten: it was revoked (its new owner reports it) or this worker stopped.
type lagTracker struct {
	forgetAfter time.Duration

	mu         sync.Mutex
	parts      map[partKey]*partLag
	migrations map[string]map[partKey]struct{}
	isKnown    map[string]bool
}

type partKey struct {
	topic     string
	partition int32
}

type partLag struct {
	newestAt time.Time
	behind   bool
	pending  map[string]time.Time // migration → oldest At of its entries in the batch under way
	touched  time.Time
}

func newLagTracker(forgetAfter time.Duration) *lagTracker {
	return &lagTracker{forgetAfter: forgetAfter, parts: map[partKey]*partLag{}, migrations: map[string]map[partKey]struct{}{}, isKnown: map[string]bool{}}
}

// known marks a migration as one whose lag is reported.
func (t *lagTracker) known(migration string) {
	t.mu.Lock()
	t.isKnown[migration] = true
	t.mu.Unlock()
}

func keyOf(e adapters.JournalEntry) partKey {
	return partKey{e.Position.Topic, e.Position.Partition}
}

// started records a batch (of one partition) about to be converged, or tried again.
func (t *lagTracker) started(batch []adapters.JournalEntry) {
	if len(batch) == 0 {
		return
	}
	k := keyOf(batch[0])
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.parts[k]
	if p == nil {
		p = &partLag{}
		t.parts[k] = p
	}
	p.pending = map[string]time.Time{}
	for _, e := range batch {
		if at, ok := p.pending[e.Migration]; !ok || e.At.Before(at) {
			p.pending[e.Migration] = e.At
		}
		parts := t.migrations[e.Migration]
		if parts == nil {
			parts = map[partKey]struct{}{}
			t.migrations[e.Migration] = parts
		}
		parts[k] = struct{}{}
	}
	p.touched = time.Now()
}

// done records a batch converged at now.
func (t *lagTracker) done(batch []adapters.JournalEntry, now time.Time) {
	if len(batch) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.parts[keyOf(batch[0])]
	if p == nil {
		return
	}
	p.pending = nil
	for _, e := range batch {
		if e.At.After(p.newestAt) {
			p.newestAt = e.At
		}
	}
	p.behind = batch[len(batch)-1].Position.Behind() > 0
	p.touched = now
}

// lags returns the lag of every known migration seen.
func (t *lagTracker) lags(now time.Time) map[string]time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, p := range t.parts {
		if (p.behind || len(p.pending) > 0) && now.Sub(p.touched) > t.forgetAfter {
			delete(t.parts, k)
		}
	}
	out := make(map[string]time.Duration, len(t.migrations))
	for m, parts := range t.migrations {
		if !t.isKnown[m] {
			continue
		}
		var lag time.Duration
		for k := range parts {
			p := t.parts[k]
			if p == nil {
				delete(parts, k)
				continue
			}
			var l time.Duration
			if at, ok := p.pending[m]; ok {
				l = now.Sub(at)
			} else if p.behind {
				l = now.Sub(p.newestAt)
			}
			lag = max(lag, l)
		}
		out[m] = max(lag, 0)
	}
	return out
}

// anyLag is the largest lag of any partition, whatever its migrations: the lag of a migration
// whose entries the worker has not seen.
func (t *lagTracker) anyLag(now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lag time.Duration
	for _, p := range t.parts {
		for _, at := range p.pending {
			lag = max(lag, now.Sub(at))
		}
		if p.behind {
			lag = max(lag, now.Sub(p.newestAt))
		}
	}
	return lag
}
