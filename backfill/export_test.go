package backfill

import (
	"context"

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
