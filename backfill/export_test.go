package backfill

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemdb/tandem/adapters"
)

// Hooks are the test-only hooks of a Config (see hooks).
type Hooks struct {
	AfterRead  func(ctx context.Context, keys []adapters.Key)
	AfterWrite func(ctx context.Context, keys []adapters.Key) error
	NoRecheck  bool
}

// WithHooks sets a Config's test hooks.
func WithHooks(cfg *Config, h Hooks) {
	cfg.hooks = &hooks{afterRead: h.AfterRead, afterWrite: h.AfterWrite, noRecheck: h.NoRecheck}
}

// ErrAborted is what an AfterWrite hook returns to stop a run as a crash would.
var ErrAborted = errAborted

// Documents and Errors are one series of tandem_backfill_documents_total and
// tandem_backfill_errors_total (created at 0 when missing).
func (m *Metrics) Documents(migration, result string) prometheus.Counter {
	return m.documents.WithLabelValues(migration, result)
}

func (m *Metrics) Errors(migration, kind string) prometheus.Counter {
	return m.errors.WithLabelValues(migration, kind)
}
