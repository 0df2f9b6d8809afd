package backfill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/transform"
)

// Defaults of Config.
const (
	DefaultWorkers    = 4
	DefaultPartitions = 16
	DefaultBatch      = 500
	DefaultChunk      = 100
	DefaultLease      = 30 * time.Second
	DefaultPoll       = 500 * time.Millisecond
	DefaultMaxLatency = 2 * time.Second
	DefaultSample     = 3
)

// Unlimited is the rate that removes a limit (SetRate, SetBytesRate).
var Unlimited = math.Inf(1)

// Sentinel errors.
var (
	// ErrInvalidConfig means a Config lacks a required field or holds a value out of range;
	// nothing was read or written.
	ErrInvalidConfig = errors.New("invalid backfill config")
	// ErrInvalidRate means a rate of 0 or less (or NaN) was given; the error names the option.
	ErrInvalidRate = errors.New("invalid backfill rate")
	// ErrSourceMissing means the source collection does not exist.
	ErrSourceMissing = errors.New("source collection does not exist")
	// ErrTargetNotEmpty means the target holds documents before the backfill wrote any, and
	// AllowExisting was not given.
	ErrTargetNotEmpty = errors.New("target already holds documents")
	// ErrNotStarted means the migration has no backfill plan: no backfill was ever run or
	// prepared for it.
	ErrNotStarted = errors.New("backfill not started")
	// ErrFinished means the backfill has copied every partition; there is nothing to pause.
	ErrFinished = errors.New("backfill already finished")
	// ErrAlreadyPaused and ErrNotPaused refuse a pause of a paused backfill and a resume of a
	// running one.
	ErrAlreadyPaused = errors.New("backfill already paused")
	ErrNotPaused     = errors.New("backfill not paused")
)

// Config wires a backfill.
type Config struct {
	// Migration names the backfill in the catalog. Required.
	Migration string
	// Spec is the migration spec: Forward transforms, Version labels dead letters, Key.Source
	// is the source key field, Indexes are created with a MongoDB target. Required.
	Spec *transform.Spec
	// Old is the source store (keyed by Spec.Key.Source), New the target. Required.
	Old, New adapters.Store
	// Catalog holds the plan, leases, checkpoints, control state, progress and dead letters.
	// Required.
	Catalog *catalog.Catalog
	// Reconverge converges one key forward from the latest state of Old (shadow.Engine's
	// Converge with shadow.Forward, a dead letter being no error). The interplay rule calls it
	// for every key that changed while its batch was being copied. Required.
	Reconverge func(ctx context.Context, key adapters.Key) error
	// Owner names this process in leases and runner reports. Optional; default the catalog's
	// ProcessID.
	Owner string
	// Workers is the number of partitions this process copies at once. Optional; default 4.
	Workers int
	// Partitions is how many partitions a new plan has (about; a MongoDB source whose keys mix
	// BSON types gets at least one per type). Read only when the plan is made. Optional;
	// default 16.
	Partitions int
	// SampledPartitions makes a new plan choose a MongoDB source's split points from $sample
	// (one aggregation per key type) instead of sorted skips (one query per split point, O(n)
	// on the server). A server without $sample (FerretDB) gets sorted skips. Optional; default
	// false.
	SampledPartitions bool
	// Batch is the most documents read, written and checkpointed at once. Optional; default 500.
	Batch int
	// Chunk is the most writes of one BulkWrite call and one throttle wait. MongoStore splits
	// further on FerretDB (25). Optional; default 100.
	Chunk int
	// Rate and BytesRate, when more than 0, set the backfill's limits in documents/s and
	// bytes/s (of the target's BSON) for all processes together, recorded in the catalog and
	// audited like SetRate. Optional; default 0: leave the catalog's limits (unlimited at first).
	Rate, BytesRate float64
	// AllowExisting lets a new plan start on a target that already holds documents. Optional;
	// default false: such a target is refused with ErrTargetNotEmpty.
	AllowExisting bool
	// Lease is how long a claim on a partition lasts without renewal; it is renewed every
	// Lease/3. Optional; default 30s.
	Lease time.Duration
	// Poll is how often the control state is read; at most 1s. Optional; default 500ms.
	Poll time.Duration
	// MaxLatency is the BulkWrite latency above which the adaptive limiter backs off.
	// Optional; default 2s.
	MaxLatency time.Duration
	// Sample is how many documents Plan transforms per partition. Optional; default 3.
	Sample int
	// Log is the logger. Optional; default slog.Default().
	Log *slog.Logger
	// Metrics receives progress and throttling, labelled with Migration; one Metrics may serve
	// every backfill of a process. Optional; default: unregistered collectors.
	Metrics *Metrics

	hooks *hooks // tests only (export_test.go)
}

// hooks let tests act inside a batch.
type hooks struct {
	// afterRead runs after a batch was read and transformed, before it is written.
	afterRead func(ctx context.Context, keys []adapters.Key)
	// afterWrite runs after a batch was written, before its re-check; an error aborts the run
	// there, as a crash would.
	afterWrite func(ctx context.Context, keys []adapters.Key) error
	// noRecheck turns the interplay rule off, to show what it prevents.
	noRecheck bool
}

func (c *Config) check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Migration == "":
		return bad("Migration is required")
	case c.Spec == nil:
		return bad("Spec is required")
	case c.Old == nil || c.New == nil:
		return bad("Old and New are required")
	case c.Catalog == nil:
		return bad("Catalog is required")
	case c.Reconverge == nil:
		return bad("Reconverge is required")
	case c.Workers < 0, c.Partitions < 0, c.Batch < 0, c.Chunk < 0, c.Sample < 0:
		return bad("Workers, Partitions, Batch, Chunk and Sample must not be negative")
	case c.Lease < 0 || c.Poll < 0 || c.MaxLatency < 0:
		return bad("Lease, Poll and MaxLatency must not be negative")
	}
	if err := checkRate("--rate", c.Rate, true); err != nil {
		return err
	}
	if err := checkRate("--bytes-rate", c.BytesRate, true); err != nil {
		return err
	}
	if c.Owner == "" {
		c.Owner = c.Catalog.ProcessID()
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Workers, DefaultWorkers)
	def(&c.Partitions, DefaultPartitions)
	def(&c.Batch, DefaultBatch)
	def(&c.Chunk, DefaultChunk)
	def(&c.Sample, DefaultSample)
	if c.Lease == 0 {
		c.Lease = DefaultLease
	}
	if c.Poll == 0 {
		c.Poll = DefaultPoll
	}
	c.Poll = min(c.Poll, time.Second)
	if c.MaxLatency == 0 {
		c.MaxLatency = DefaultMaxLatency
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.hooks == nil {
		c.hooks = &hooks{}
	}
	return nil
}

// checkRate refuses a rate of 0 or less (or NaN), naming the option; zeroOK allows 0 (a
// Config field left unset).
func checkRate(option string, r float64, zeroOK bool) error {
	if math.IsNaN(r) || r < 0 || (r == 0 && !zeroOK) {
		return fmt.Errorf("%w: %s must be more than 0 (got %v); use backfill.Unlimited to remove the limit", ErrInvalidRate, option, r)
	}
	return nil
}

// Summary is what one Run of this process did, and the backfill's progress when it ended.
type Summary struct {
	// Copied, Bytes, DeadLettered and Reconverged count this process's batches that were
	// checkpointed: documents written, their bytes, documents dead-lettered (never written),
	// and keys converged again because they changed while their batch was copied.
	Copied, Bytes, DeadLettered, Reconverged int64
	// Partitions is the number of partitions this process finished.
	Partitions int
	Elapsed    time.Duration
	// Progress is the whole backfill's, over every process, as the catalog has it.
	Progress Progress
}

// Backfill copies the source's documents to the target, sharing the work with every other
// process that runs the same migration's backfill on the same catalog.
type Backfill struct {
	cfg Config
	log *slog.Logger
	m   *migrationMetrics // cfg.Metrics for cfg.Migration

	plan  catalog.BackfillPlan
	parts []catalog.BackfillPartition

	thr     *throttle
	leases  *leaseSet
	copied  atomic.Int64
	bytes   atomic.Int64
	dead    atomic.Int64
	reconv  atomic.Int64
	done    atomic.Int64
	summary Summary
	mu      sync.Mutex
}

// New checks cfg and returns a backfill ready to Run.
func New(cfg Config) (*Backfill, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	b := &Backfill{cfg: cfg, log: cfg.Log.With("migration", cfg.Migration, "component", "backfill")}
	b.m = cfg.Metrics.forMigration(cfg.Migration)
	b.thr = newThrottle(&b.cfg, b.m)
	b.leases = &leaseSet{held: map[int]*held{}}
	return b, nil
}

// Run runs a backfill until every partition is done (by this process or another) and returns
// what it did; see Backfill.Run.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	b, err := New(cfg)
	if err != nil {
		return Summary{}, err
	}
	err = b.Run(ctx)
	return b.Summary(), err
}

// Summary returns what the last Run did (zero before one ended).
func (b *Backfill) Summary() Summary {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.summary
}

// Run prepares the backfill (Prepare), then copies partitions with Config.Workers workers until
// every partition is done, by any process, and returns nil. It is resumable: run it again, here
// or in another process, after a crash or a cancel, and it continues from the checkpoints. It
// returns ctx's error when ctx ends first, after releasing its leases so another process can
// take them at once. A catalog that stops answering makes it wait, not fail.
func (b *Backfill) Run(ctx context.Context) error {
	start := time.Now()
	plan, parts, err := b.prepare(ctx)
	if err != nil {
		return err
	}
	b.plan, b.parts = plan, parts
	b.m.partitionsTotal.Set(float64(len(parts)))
	if err := b.applyConfigRates(ctx); err != nil {
		return err
	}
	b.log.Info("backfill starting", "plan", plan.PlanID, "partitions", len(parts), "estimate", plan.Estimate, "owner", b.cfg.Owner, "workers", b.cfg.Workers)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var bg sync.WaitGroup
	bg.Go(func() { b.thr.run(runCtx, b) })
	bg.Go(func() { b.renewLoop(runCtx) })

	errs := make(chan error, b.cfg.Workers)
	var wg sync.WaitGroup
	for i := range b.cfg.Workers {
		wg.Go(func() {
			if err := b.worker(runCtx, i); err != nil {
				errs <- err
				cancel()
			}
		})
	}
	wg.Wait()
	close(errs)
	cancel()
	bg.Wait()
	b.releaseAll()
	var runErr error
	for err := range errs {
		if runErr == nil || errors.Is(runErr, context.Canceled) {
			runErr = err
		}
	}
	if runErr == nil {
		runErr = ctx.Err()
	}

	sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer scancel()
	prog, perr := Status(sctx, b.cfg.Catalog, b.cfg.Migration)
	if perr != nil {
		b.log.Warn("reading the final progress", "err", perr)
	}
	b.mu.Lock()
	b.summary = Summary{
		Copied: b.copied.Load(), Bytes: b.bytes.Load(), DeadLettered: b.dead.Load(), Reconverged: b.reconv.Load(),
		Partitions: int(b.done.Load()), Elapsed: time.Since(start), Progress: prog,
	}
	b.mu.Unlock()
	_ = b.cfg.Catalog.ReportBackfillRunner(sctx, catalog.BackfillRunner{Migration: b.cfg.Migration, Owner: b.cfg.Owner, State: stateOf(runErr)})
	if runErr != nil {
		return runErr
	}
	b.log.Info("backfill done", "copied", b.copied.Load(), "dead_lettered", b.dead.Load(), "reconverged", b.reconv.Load(), "elapsed", time.Since(start).Round(time.Millisecond))
	return nil
}

func stateOf(err error) string {
	if err == nil {
		return "done"
	}
	return "stopped"
}

// worker claims partitions and copies them until none is left.
func (b *Backfill) worker(ctx context.Context, id int) error {
	for {
		h, err := b.claim(ctx, id)
		switch {
		case errors.Is(err, errAllDone):
			return nil
		case err != nil:
			return err
		case h == nil: // every partition left is held by a live lease: wait for one to free up
			if err := sleep(ctx, min(b.cfg.Lease/4, time.Second)); err != nil {
				return err
			}
			continue
		}
		err = b.copyPartition(ctx, h)
		if err == nil || errors.Is(err, errLeaseLost) {
			b.leases.drop(h) // else releaseAll lets it go when Run ends
		}
		switch {
		case errors.Is(err, errLeaseLost):
			b.log.Warn("partition taken over by another process; leaving it", "partition", h.part.Index, "generation", h.generation)
		case err != nil:
			return err
		}
	}
}

// retry runs fn until it succeeds or ctx ends, backing off from 100ms to 2s; it is for the
// catalog, whose outage makes the copy wait rather than fail.
func (b *Backfill) retry(ctx context.Context, what string, fn func(context.Context) error) error {
	delay := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := fn(ctx)
		if errors.Is(err, errLeaseLost) {
			return err // permanent for this lease: the caller leaves the partition
		}
		if err == nil || ctx.Err() != nil {
			if err != nil {
				return ctx.Err()
			}
			return nil
		}
		if attempt == 0 || attempt%10 == 0 {
			b.log.Warn("catalog unavailable; retrying", "op", what, "attempt", attempt+1, "err", err)
		}
		b.m.errors.WithLabelValues("catalog").Inc()
		if err := sleep(ctx, delay); err != nil {
			return err
		}
		delay = min(2*delay, 2*time.Second)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// keyField is the source key field.
func (b *Backfill) keyField() string { return b.cfg.Spec.Key.Source }

// bsonSize is the size of doc's BSON encoding, or -1 when it has none.
func bsonSize(doc bson.D) (int, []byte) {
	raw, err := bson.Marshal(doc)
	if err != nil {
		return -1, nil
	}
	return len(raw), raw
}
