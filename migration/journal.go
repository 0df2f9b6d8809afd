package migration

import (
	"context"
	"fmt"
	"log/slog"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/proxy"
	"github.com/tandemdb/tandem/shadow"
)

// PathJournal names the journal worker's path. It is no flags.Path: the worker is
// process-wide and runs in every phase (see NewJournalWorker).
const PathJournal = "journal-worker"

// JournalConfig wires the process-wide journal worker.
type JournalConfig struct {
	// Journal is the journal to consume (*adapters.KafkaJournal). Required.
	Journal cdc.Journal
	// Group is the consumer group. Optional; default cdc.DefaultJournalGroup.
	Group string
	// LagReporter receives each migration's lag (*catalog.Catalog). Optional.
	LagReporter cdc.LagReporter
	// Metrics receives counts and lag. Optional; default: unregistered collectors.
	Metrics *cdc.WorkerMetrics
	// Logger is the logger. Optional; default: discard.
	Logger *slog.Logger
}

// NewJournalWorker returns the path that converges the journal's entries for runners, to run
// under a Supervisor (and list with Runner.Share).
//
// It is one per process, not one per migration: every migration journals to one topic, and
// its consumers share one consumer group, so each partition has one consumer in the
// deployment. Per-migration workers in that group would be handed each other's entries and
// skip them. It runs in every phase: what the journal holds was written in a phase that
// converged, and converging it again later is harmless (converge is idempotent). An unkeyed
// entry is resolved to the keys of the old documents matching its filter now, at most the
// runner's PreReadLimit of them.
func NewJournalWorker(cfg JournalConfig, runners ...*Runner) (Path, error) {
	engines := make(map[string]*shadow.Engine, len(runners))
	byName := make(map[string]*Runner, len(runners))
	names := make([]string, 0, len(runners))
	for _, r := range runners {
		if _, dup := byName[r.name]; dup {
			return nil, fmt.Errorf("%w: journal worker: migration %s given twice", ErrInvalidConfig, r.name)
		}
		engines[r.name], byName[r.name] = r.engine, r
		names = append(names, r.name)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w, err := cdc.NewJournalWorker(cdc.JournalWorkerConfig{
		Journal: cfg.Journal, Group: cfg.Group, Engines: cdc.EngineMap(engines), LagReporter: cfg.LagReporter,
		Migrations: names, FilterKeys: filterKeys(byName), Metrics: cfg.Metrics, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return journalPath{w}, nil
}

type journalPath struct{ w *cdc.JournalWorker }

func (journalPath) Name() string                    { return PathJournal }
func (p journalPath) Run(ctx context.Context) error { return p.w.Run(ctx) }

// filterKeys resolves an unkeyed journal entry to the keys of the old documents matching its
// filter now (best effort: a delete by filter matches nothing any more).
func filterKeys(runners map[string]*Runner) cdc.FilterKeysFunc {
	return func(ctx context.Context, migration, _ string, filter bson.Raw) ([]adapters.Key, error) {
		r, ok := runners[migration]
		if !ok {
			return nil, fmt.Errorf("migration %s: %w", migration, cdc.ErrUnresolvable)
		}
		if len(filter) == 0 {
			return nil, fmt.Errorf("no filter (an insert without _id, say): %w", cdc.ErrUnresolvable)
		}
		limit := r.cfg.PreReadLimit
		keys, err := proxy.MongoPreRead(r.cfg.Old)(ctx, filter, limit)
		if err != nil {
			return nil, err
		}
		if len(keys) > limit {
			return nil, fmt.Errorf("filter matches more than %d documents: %w", limit, cdc.ErrUnresolvable)
		}
		return keys, nil
	}
}
