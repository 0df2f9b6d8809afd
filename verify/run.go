package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"golang.org/x/time/rate"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
)

// SourceVerify is the Source of the mismatches a run records.
const SourceVerify = "verify"

// ProgressPath is the catalog progress path a run adds its counters to ("keys", "mismatches",
// "errors"), summed over every run and process.
const ProgressPath = "verify"

// Defaults of Config.
const (
	DefaultPartitions  = 4
	DefaultBatch       = 500
	DefaultConcurrency = 2
)

// ErrInvalidConfig means Run was given a Config that lacks a required field; no run started
// and no summary was saved.
var ErrInvalidConfig = errors.New("invalid verification config")

// summaryTimeout bounds the saving of the summary after the run's context has ended.
const summaryTimeout = 30 * time.Second

// Catalog is where a run records its mismatches and its summary (*catalog.Catalog).
type Catalog interface {
	RecordMismatch(ctx context.Context, m catalog.Mismatch) (bson.ObjectID, error)
	MarkRepaired(ctx context.Context, id bson.ObjectID) error
	SaveVerifySummary(ctx context.Context, migration string, s catalog.VerifySummary) error
}

// Progress receives a run's counters after each batch (*catalog.Catalog).
type Progress interface {
	AddProgress(ctx context.Context, migration, path string, deltas map[string]int64) error
}

// Config wires a verification run.
type Config struct {
	// Migration names the migration in mismatches, progress and the summary. Required.
	Migration string
	// Old and New are the two stores; both are read, neither is written (Repair aside).
	// Required.
	Old, New adapters.Store
	// Forward maps an old document to what the new store should hold (transform.Spec.Forward).
	// Its result goes through New.Normalize before it is compared. Required.
	Forward func(bson.D) (bson.D, error)
	// Catalog records mismatches and the summary. Required.
	Catalog Catalog
	// Repair, when set, is called with the key of every confirmed mismatch but the
	// untransformable ones (which only a spec fix or a change of the document can mend); it
	// should converge the key forward (shadow.Engine.Converge, mapping a dead letter to an
	// error). A repaired mismatch still counts: the run is not clean, the next one can be.
	// Optional; default: report only.
	Repair func(ctx context.Context, key adapters.Key) error
	// Progress receives counters after each batch under ProgressPath. Optional; default none.
	Progress Progress
	// Partitions is how many parts each store's key space is split into. Optional; default 4.
	Partitions int
	// Batch is the most documents read and compared at once. Optional; default 500.
	Batch int
	// Concurrency is the number of partitions scanned at once. Optional; default 2.
	Concurrency int
	// Rate limits the documents read by the scans of both stores, per second (rechecks are
	// not limited). Optional; default 0: unlimited.
	Rate float64
	// Settle is how long to wait before rechecking the differences of a batch, so that a
	// converge still queued (async shadow writes, change streams) lands first. Optional;
	// default 0: recheck at once, right when writes converge before the client's reply. In
	// the shadow phase, set it to the expected converge lag, or documents written during the
	// run show up as mismatches.
	Settle time.Duration
	// Logger receives a line per mismatch and per error. Optional; default: discarded.
	Logger *slog.Logger

	// afterRead and beforeRecheck are test hooks (export_test.go).
	afterRead     func(p pass, keys []adapters.Key)
	beforeRecheck func(keys []adapters.Key)
}

func (c Config) check() error {
	var missing []string
	if c.Migration == "" {
		missing = append(missing, "Migration")
	}
	if c.Old == nil {
		missing = append(missing, "Old")
	}
	if c.New == nil {
		missing = append(missing, "New")
	}
	if c.Forward == nil {
		missing = append(missing, "Forward")
	}
	if c.Catalog == nil {
		missing = append(missing, "Catalog")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %v", ErrInvalidConfig, missing)
	}
	if c.Rate < 0 {
		return fmt.Errorf("%w: negative Rate %v", ErrInvalidConfig, c.Rate)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Partitions <= 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Batch <= 0 {
		c.Batch = DefaultBatch
	}
	if c.Concurrency <= 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Run verifies that the new store holds the forward transform of every document of the old
// store, and nothing else, and saves the summary to the catalog (see the package doc). The
// summary is saved also when the run ends early (ctx cancelled, a store failing): it is then
// not clean, and Run returns the error that ended it. Only an invalid Config saves nothing.
func Run(ctx context.Context, cfg Config) (catalog.VerifySummary, error) {
	if err := cfg.check(); err != nil {
		return catalog.VerifySummary{}, err
	}
	r := newRun(cfg.withDefaults())
	started := time.Now().UTC()
	r.log.Info("verification started")
	err := r.verify(ctx)
	sum := r.summary(started, time.Now().UTC(), err)
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), summaryTimeout)
	defer cancel()
	if serr := cfg.Catalog.SaveVerifySummary(saveCtx, cfg.Migration, sum); serr != nil {
		err = errors.Join(err, fmt.Errorf("verify %s: saving the summary: %w", cfg.Migration, serr))
	}
	r.log.Info("verification finished", "clean", sum.Clean, "keys", sum.Keys,
		"mismatches", sum.Mismatches, "errors", sum.Errors, "rechecked", sum.Rechecked, "repaired", sum.Repaired, "err", err)
	return sum, err
}

// pass says which store a scan reads: the old one (every key compared) or the new one (keys
// the old store lacks).
type pass string

const (
	passOld pass = "old"
	passNew pass = "new"
)

type task struct {
	pass pass
	part adapters.Partition
}

// maxSamples is how many lines VerifySummary.Samples keeps.
const maxSamples = 20

// run is the state of one Run.
type run struct {
	cfg     Config
	log     *slog.Logger
	limiter *rate.Limiter // nil: unlimited

	mu        sync.Mutex
	sum       catalog.VerifySummary // counters only
	confirmed map[string]bool       // KeyString of every key recorded, so no key counts twice
}

func newRun(cfg Config) *run {
	r := &run{cfg: cfg, log: cfg.Logger.With("migration", cfg.Migration), confirmed: map[string]bool{}}
	if cfg.Rate > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(cfg.Rate), cfg.Batch)
	}
	return r
}

// verify scans every partition of both stores with Concurrency workers; the first error
// stops the others.
func (r *run) verify(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	oldParts, err := r.cfg.Old.Partitions(ctx, r.cfg.Partitions)
	if err != nil {
		return fmt.Errorf("verify %s: partitioning the old store: %w", r.cfg.Migration, err)
	}
	newParts, err := r.cfg.New.Partitions(ctx, r.cfg.Partitions)
	if err != nil {
		return fmt.Errorf("verify %s: partitioning the new store: %w", r.cfg.Migration, err)
	}
	tasks := make(chan task, len(oldParts)+len(newParts))
	for _, p := range oldParts {
		tasks <- task{passOld, p}
	}
	for _, p := range newParts {
		tasks <- task{passNew, p}
	}
	close(tasks)
	var wg sync.WaitGroup
	for range r.cfg.Concurrency {
		wg.Go(func() {
			for t := range tasks {
				if ctx.Err() != nil {
					return
				}
				if err := r.scan(ctx, t); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// scan checks one partition of one store, batch by batch.
func (r *run) scan(ctx context.Context, t task) error {
	store, check := r.cfg.Old, r.checkOld
	if t.pass == passNew {
		store, check = r.cfg.New, r.checkNew
	}
	err := store.Scan(ctx, t.part, adapters.ScanOptions{Batch: r.cfg.Batch}, func(docs []bson.D) error {
		if err := r.wait(ctx, len(docs)); err != nil {
			return err
		}
		return check(ctx, docs)
	})
	if err != nil {
		return fmt.Errorf("verify %s: scanning the %s store: %w", r.cfg.Migration, t.pass, err)
	}
	return nil
}

// wait takes n documents from the rate limiter.
func (r *run) wait(ctx context.Context, n int) error {
	if r.limiter == nil {
		return nil
	}
	for n > 0 {
		k := min(n, r.limiter.Burst())
		if err := r.limiter.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// summary puts the counters together; err is what ended the run early, nil if it completed.
func (r *run) summary(started, finished time.Time, err error) catalog.VerifySummary {
	r.mu.Lock()
	s := r.sum
	s.Samples = append([]string(nil), r.sum.Samples...)
	r.mu.Unlock()
	s.Started, s.Finished = started, finished
	if err != nil {
		s.Aborted = err.Error()
	}
	s.Clean = err == nil && s.Mismatches == 0 && s.Errors == 0
	return s
}

// count adds a batch's keys and errors to the summary (confirm counts mismatches) and reports
// the batch's tally as progress.
func (r *run) count(ctx context.Context, t tally) {
	r.mu.Lock()
	r.sum.Keys += t.keys
	r.sum.Errors += t.keyErrors
	r.mu.Unlock()
	if r.cfg.Progress == nil || t == (tally{}) {
		return
	}
	deltas := map[string]int64{"keys": t.keys, "mismatches": t.mismatches, "errors": t.keyErrors + t.untransformable}
	if err := r.cfg.Progress.AddProgress(ctx, r.cfg.Migration, ProgressPath, deltas); err != nil {
		r.log.Warn("reporting verification progress failed", "err", err)
	}
}

// sample keeps line among the first maxSamples.
func (r *run) sample(line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sum.Samples) < maxSamples {
		r.sum.Samples = append(r.sum.Samples, line)
	}
}
