package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/shadow"
)

// DefaultJournalGroup is the consumer group of journal workers when JournalWorkerConfig.Group
// is empty: every worker of a deployment shares it, so each partition has one of them.
const DefaultJournalGroup = "tandem-converge"

// ComponentJournal is the component name under which a JournalWorker reports its lag.
const ComponentJournal = "journal-forward"

// Sentinel errors of the journal worker.
var (
	// ErrUnknownMigration is returned (wrapped) by an EngineResolver for a migration it has no
	// engine for. The worker logs, counts and skips that migration's entries.
	ErrUnknownMigration = errors.New("unknown migration")
	// ErrUnresolvable is returned (wrapped) by a FilterKeysFunc for a filter it can never turn
	// into keys (an operator it does not support, say). The worker logs, counts and skips the
	// entry; any other error is retried.
	ErrUnresolvable = errors.New("filter cannot be resolved to keys")
)

// Journal is what a JournalWorker needs of the journal: *adapters.KafkaJournal.
type Journal interface {
	Consume(ctx context.Context, group string, handle func(ctx context.Context, batch []adapters.JournalEntry) error) error
}

var _ Journal = (*adapters.KafkaJournal)(nil)

// LagReporter records how far a component is behind (*catalog.Catalog).
type LagReporter interface {
	ReportLag(ctx context.Context, migration, component string, lag time.Duration) error
}

// EngineResolver returns the converge engine of a migration, or an error wrapping
// ErrUnknownMigration when there is none; any other error is retried.
type EngineResolver func(ctx context.Context, migration string) (*shadow.Engine, error)

// EngineMap returns an EngineResolver over a fixed set of engines, by migration name.
func EngineMap(engines map[string]*shadow.Engine) EngineResolver {
	return func(_ context.Context, migration string) (*shadow.Engine, error) {
		if e := engines[migration]; e != nil {
			return e, nil
		}
		return nil, fmt.Errorf("%w %q", ErrUnknownMigration, migration)
	}
}

// FilterKeysFunc returns the keys of the old store's documents of namespace ns that match
// filter now. It serves unkeyed journal entries (an updateMany by another field, say).
type FilterKeysFunc func(ctx context.Context, migration, ns string, filter bson.Raw) ([]adapters.Key, error)

// JournalWorkerConfig wires a JournalWorker.
type JournalWorkerConfig struct {
	// Journal is the journal to consume. Required.
	Journal Journal
	// Group is the consumer group. Optional; default DefaultJournalGroup ("tandem-converge").
	Group string
	// Engines resolves a migration name to its engine. Required; EngineMap makes one from a map.
	Engines EngineResolver
	// FilterKeys resolves unkeyed entries to keys. Optional; default: unkeyed entries are
	// logged, counted and skipped (the change-stream path and the verifier cover them).
	FilterKeys FilterKeysFunc
	// LagReporter receives each migration's lag every LagEvery. Optional; default: the lag is
	// only exported as a metric.
	LagReporter LagReporter
	// Component is the component name of lag reports. Optional; default ComponentJournal.
	Component string
	// Migrations are the migrations this worker converges. Each is reported (with the largest
	// lag of any partition, 0 when caught up) even while the journal holds nothing for it, so
	// an idle migration shows a fresh lag of 0 instead of none. Optional.
	Migrations []string
	// LagEvery is how often lag is reported. Optional; default 5s.
	LagEvery time.Duration
	// Metrics receives counts and the lag. Optional; default: unregistered collectors.
	Metrics *WorkerMetrics
	// Logger is the logger. Optional; default slog.Default().
	Logger *slog.Logger
}

// JournalWorker consumes the journal of changed keys and converges each key forward, old → new.
type JournalWorker struct {
	cfg JournalWorkerConfig
	log *slog.Logger
	m   *WorkerMetrics
	lag *lagTracker
}

// NewJournalWorker checks cfg and returns a worker; Run starts it.
func NewJournalWorker(cfg JournalWorkerConfig) (*JournalWorker, error) {
	switch {
	case cfg.Journal == nil:
		return nil, errors.New("cdc: JournalWorkerConfig.Journal is required")
	case cfg.Engines == nil:
		return nil, errors.New("cdc: JournalWorkerConfig.Engines is required")
	case cfg.LagEvery < 0:
		return nil, fmt.Errorf("cdc: JournalWorkerConfig.LagEvery is negative (%s)", cfg.LagEvery)
	}
	if cfg.Group == "" {
		cfg.Group = DefaultJournalGroup
	}
	if cfg.Component == "" {
		cfg.Component = ComponentJournal
	}
	if cfg.LagEvery == 0 {
		cfg.LagEvery = 5 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewWorkerMetrics(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// The counters of the migrations named exist at 0 from the start, so that a rate over them
	// sees their first increment. The lag appears with the first report (LagEvery).
	for _, m := range cfg.Migrations {
		cfg.Metrics.batchFailures.WithLabelValues(m)
		for _, a := range shadow.Actions {
			cfg.Metrics.keys.WithLabelValues(m, a.String())
		}
	}
	return &JournalWorker{cfg: cfg, log: cfg.Logger, m: cfg.Metrics, lag: newLagTracker(10 * cfg.LagEvery)}, nil
}

// Run consumes the journal until ctx ends, then returns nil. Should the consumer stop with an
// error (the group cannot be joined, say), Run logs it and starts it again after a delay; it
// returns the error only when the journal was closed (adapters.ErrJournalClosed).
func (w *JournalWorker) Run(ctx context.Context) error {
	reportDone := make(chan struct{})
	reportCtx, stopReports := context.WithCancel(ctx)
	go func() {
		defer close(reportDone)
		w.reportLoop(reportCtx)
	}()
	defer func() {
		stopReports()
		<-reportDone
	}()
	for attempt := 1; ; attempt++ {
		started := time.Now()
		err := w.cfg.Journal.Consume(ctx, w.cfg.Group, w.handle)
		if time.Since(started) > time.Minute {
			attempt = 1 // it ran well for a while: start the backoff over
		}
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, adapters.ErrJournalClosed) {
			return fmt.Errorf("journal worker of group %s: %w", w.cfg.Group, err)
		}
		wait := min(time.Second<<min(attempt-1, 5), 30*time.Second)
		wait = wait/2 + rand.N(wait/2+1)
		w.m.consumerRestarts.Inc()
		w.log.Error("journal consumer stopped; restarting", "group", w.cfg.Group, "attempt", attempt, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// handle converges one batch of one partition. An error makes Consume hand over the same batch
// again later; the keys meanwhile stay in Kafka.
func (w *JournalWorker) handle(ctx context.Context, batch []adapters.JournalEntry) error {
	w.lag.started(batch)
	var order []string
	byMigration := map[string][]adapters.JournalEntry{}
	for _, e := range batch {
		if _, ok := byMigration[e.Migration]; !ok {
			order = append(order, e.Migration)
		}
		byMigration[e.Migration] = append(byMigration[e.Migration], e)
	}
	for _, m := range order {
		if err := w.convergeMigration(ctx, m, byMigration[m]); err != nil {
			w.m.batchFailures.WithLabelValues(m).Inc()
			return err
		}
	}
	w.lag.done(batch, time.Now())
	return nil
}

// convergeMigration converges the entries of one migration: the keyed ones in one batch, the
// unkeyed ones through FilterKeys.
func (w *JournalWorker) convergeMigration(ctx context.Context, migration string, entries []adapters.JournalEntry) error {
	engine, err := w.cfg.Engines(ctx, migration)
	if err == nil && engine == nil {
		err = fmt.Errorf("%w %q", ErrUnknownMigration, migration)
	}
	if errors.Is(err, ErrUnknownMigration) {
		w.m.keys.WithLabelValues(migration, "skipped_unknown_migration").Add(float64(len(entries)))
		w.log.Warn("journal entries of an unknown migration skipped", "migration", migration, "entries", len(entries), "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("journal worker: engine of migration %s: %w", migration, err)
	}
	w.lag.known(migration)
	var keys []adapters.Key
	for _, e := range entries {
		if e.Key != nil {
			keys = append(keys, e.Key)
			continue
		}
		more, err := w.filterKeys(ctx, e)
		if err != nil {
			return err
		}
		keys = append(keys, more...)
	}
	for chunk := range slices.Chunk(keys, maxConvergeBatch) {
		results, err := engine.ConvergeBatch(ctx, chunk, shadow.Forward)
		if err != nil {
			return fmt.Errorf("journal worker: converging %d keys of migration %s: %w", len(chunk), migration, err)
		}
		for _, r := range results {
			w.m.keys.WithLabelValues(migration, r.Action.String()).Inc()
		}
	}
	return nil
}

// maxConvergeBatch bounds the keys of one ConvergeBatch (FilterKeys may return many).
const maxConvergeBatch = 500

// filterKeys resolves an unkeyed entry to the keys its filter matches now; nil (and the entry
// counted as skipped) when that cannot be done. The filter is user data: it is logged only at
// debug, on a line of its own; warnings and errors name it by adapters.FilterHash.
func (w *JournalWorker) filterKeys(ctx context.Context, e adapters.JournalEntry) ([]adapters.Key, error) {
	if w.cfg.FilterKeys == nil {
		w.skipUnkeyed(e, "unkeyed journal entry skipped: no FilterKeys configured", nil)
		return nil, nil
	}
	keys, err := w.cfg.FilterKeys(ctx, e.Migration, e.Namespace, e.Filter)
	if errors.Is(err, ErrUnresolvable) {
		w.skipUnkeyed(e, "unkeyed journal entry skipped", err)
		return nil, nil
	}
	if err != nil {
		hash := adapters.FilterHash(e.Filter)
		w.debugFilter("filter of an unkeyed journal entry whose keys could not be read", e, hash)
		return nil, fmt.Errorf("journal worker: keys of %s matching the filter of an unkeyed %s (filter_hash %s, migration %s): %w",
			e.Namespace, e.Op, hash, e.Migration, err)
	}
	return keys, nil
}

// skipUnkeyed counts and logs an unkeyed entry that is skipped: a warning with its namespace,
// op and filter hash, and the filter itself on a debug line.
func (w *JournalWorker) skipUnkeyed(e adapters.JournalEntry, msg string, err error) {
	w.m.keys.WithLabelValues(e.Migration, "skipped_unkeyed").Inc()
	hash := adapters.FilterHash(e.Filter)
	args := []any{"migration", e.Migration, "ns", e.Namespace, "op", e.Op, "filter_hash", hash}
	if err != nil {
		args = append(args, "err", err)
	}
	w.log.Warn(msg, args...)
	w.debugFilter("filter of a skipped unkeyed journal entry", e, hash)
}

// debugFilter logs an unkeyed entry's filter, at debug only: it is user data.
func (w *JournalWorker) debugFilter(msg string, e adapters.JournalEntry, hash string) {
	w.log.Debug(msg+" (logged at debug only: it is user data)",
		"migration", e.Migration, "ns", e.Namespace, "op", e.Op, "filter_hash", hash, "filter", e.Filter.String())
}

// reportLoop reports each migration's lag every LagEvery until ctx ends.
func (w *JournalWorker) reportLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.LagEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		lags := w.lag.lags(now)
		for _, m := range w.cfg.Migrations {
			if _, seen := lags[m]; !seen {
				// Its entries, if any, are somewhere this worker has not reached yet.
				lags[m] = w.lag.anyLag(now)
			}
		}
		for migration, lag := range lags {
			w.m.lag.WithLabelValues(migration).Set(lag.Seconds())
			if w.cfg.LagReporter == nil {
				continue
			}
			if err := w.cfg.LagReporter.ReportLag(ctx, migration, w.cfg.Component, lag); err != nil && ctx.Err() == nil {
				w.m.lagReportFailures.Inc()
				w.log.Warn("reporting journal lag", "migration", migration, "lag", lag, "err", err)
			}
		}
	}
}

// WorkerMetrics are a JournalWorker's collectors, registered by the caller.
type WorkerMetrics struct {
	keys              *prometheus.CounterVec
	batchFailures     *prometheus.CounterVec
	lag               *prometheus.GaugeVec
	lagReportFailures prometheus.Counter
	consumerRestarts  prometheus.Counter
}

// NewWorkerMetrics creates the collectors and registers them with reg (nil: unregistered).
func NewWorkerMetrics(reg prometheus.Registerer) *WorkerMetrics {
	m := &WorkerMetrics{
		keys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_journal_worker_keys_total",
			Help: "Journal keys converged, by migration and result (upserted, unchanged, deleted, dead_lettered, " +
				"skipped_unknown_migration, skipped_unkeyed); a retried batch counts again.",
		}, []string{"migration", "result"}),
		batchFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_journal_worker_batch_failures_total",
			Help: "Journal batches that failed to converge and will be retried (a store down, say), by migration.",
		}, []string{"migration"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_journal_worker_lag_seconds",
			Help: "How far the journal worker is behind, by migration: now minus the time of the oldest entry waiting, or 0 when caught up.",
		}, []string{"migration"}),
		lagReportFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_journal_worker_lag_report_failures_total",
			Help: "Lag reports the LagReporter (the catalog) refused.",
		}),
		consumerRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_journal_worker_consumer_restarts_total",
			Help: "Times the journal consumer stopped with an error and was started again.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.keys, m.batchFailures, m.lag, m.lagReportFailures, m.consumerRestarts)
	}
	return m
}
