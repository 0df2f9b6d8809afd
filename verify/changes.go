package verify

import (
	"context"
	"sync"
	"time"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
)

// CatalogChanges is the Changes the catalog can tell without change capture: the keys whose
// converge failed (dead letters seen since) and the keys a shadow read found different
// (mismatch records of the proxy's comparer). They are the keys most likely to differ; the
// change streams (package cdc) will give every changed key.
type CatalogChanges struct {
	Catalog   *catalog.Catalog
	Migration string
}

// ChangedSince implements Changes.
func (c CatalogChanges) ChangedSince(ctx context.Context, since time.Time, limit int) ([]adapters.Key, error) {
	return c.Catalog.ChangedKeysSince(ctx, c.Migration, since, limit)
}

// ChangeList is a Changes over keys handed to it (by a change-stream consumer, or a test):
// Add records keys as changed now. It keeps at most Limit keys (0: 100000), forgetting the
// oldest. Its zero value is ready; it is safe for concurrent use.
type ChangeList struct {
	Limit int

	mu      sync.Mutex
	entries []changed
}

type changed struct {
	at  time.Time
	key adapters.Key
}

// Add records keys as changed now.
func (l *ChangeList) Add(keys ...adapters.Key) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	for _, k := range keys {
		l.entries = append(l.entries, changed{at: now, key: k})
	}
	limit := l.Limit
	if limit <= 0 {
		limit = 100000
	}
	if over := len(l.entries) - limit; over > 0 {
		l.entries = append(l.entries[:0], l.entries[over:]...)
	}
}

// ChangedSince implements Changes.
func (l *ChangeList) ChangedSince(_ context.Context, since time.Time, limit int) ([]adapters.Key, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []adapters.Key
	for _, e := range l.entries {
		if !e.at.Before(since) && len(out) < limit {
			out = append(out, e.key)
		}
	}
	return out, nil
}
