package verify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/transform"
)

// SourceVerify is the Source of the mismatches a run records in the catalog's mismatch list
// (catalog.Mismatch), besides its own records (catalog.VerifyMismatch).
const SourceVerify = "verify"

// ProgressPath is the catalog progress path a run adds its counters to ("keys", "mismatches",
// "errors", "sampled"), summed over every run and process.
const ProgressPath = "verify"

// Defaults of Config.
const (
	DefaultPartitions     = 4
	DefaultBatch          = 500
	DefaultConcurrency    = 2
	DefaultLease          = 30 * time.Second
	DefaultMaxGenerations = 10
	DefaultRepairRate     = 50
	DefaultRetries        = 5
	DefaultPoll           = 200 * time.Millisecond
	DefaultDriftEvery     = 10 * time.Second
	DefaultRecheckEvery   = 5 * time.Second
	// DefaultCheckpointEvery is the join plan's checkpoint interval.
	DefaultCheckpointEvery = time.Second
)

// The full pass's plans (Config.Plan).
const (
	// PlanAuto merges where it can (PlanMerge), and joins otherwise (PlanJoin).
	PlanAuto = ""
	// PlanMerge reads key ranges of two MongoDB collections keyed by _id in key order and
	// walks them side by side: each store read once, two batches in memory, the ranges shared
	// by every process working on the run.
	PlanMerge = "merge"
	// PlanJoin reads every partition of both stores once, spills a digest per document to
	// local disk by the hash of its key and joins the buckets (join.go): for stores with no
	// common key order. One process holds the full pass.
	PlanJoin = "join"
	// PlanLookup compares each batch of each store's partitions by looking its keys up in the
	// other store: every document read twice, but the partitions are tasks that processes
	// share.
	PlanLookup = "lookup"
)

// ErrInvalidConfig means Run was given a Config that lacks a required field; no run started
// and no summary was saved.
var ErrInvalidConfig = errors.New("invalid verification config")

// Changes tells a run which keys changed since a time, so that a recheck generation compares
// them again: the keys the proxy's converges and the journal touched, and (once change
// capture runs) the change streams'. CatalogChanges reads what the catalog records; package
// cdc can feed its own later.
type Changes interface {
	// ChangedSince returns at most limit keys of the old store changed at or after since.
	// A key may come more than once; a key missing from the answer is not an error (rechecks
	// are a safety net, the rolling sample and the next run catch the rest).
	ChangedSince(ctx context.Context, since time.Time, limit int) ([]adapters.Key, error)
}

// Config wires a verification run.
type Config struct {
	// Migration names the migration in every record. Required.
	Migration string
	// SpecVersion is recorded with the run. Optional.
	SpecVersion string
	// Old and New are the two stores; both are read, neither is written (Repair aside).
	// Required.
	Old, New adapters.Store
	// Forward maps an old document to what the new store should hold (transform.Spec.Forward).
	// Its result goes through New.Normalize before it is compared. Required.
	Forward func(bson.D) (bson.D, error)
	// Invariants must hold for every new document compared (transform.VerifySpec.Invariants).
	// Optional.
	Invariants []transform.Invariant
	// Indexes are the indexes the new store must have (transform.Spec.RequiredIndexes),
	// checked at the end of every generation when New lists its indexes
	// (adapters.IndexLister). Optional.
	Indexes []transform.Index
	// Catalog holds the run's tasks, leases, mismatches and summary. Required.
	Catalog *catalog.Catalog
	// Changes feeds keys changed during a generation into the next. Optional; default none:
	// only the keys that differed are rechecked.
	Changes Changes
	// Repair, when set, is called with the key of every confirmed mismatch but the
	// untransformable, invariant and index ones (which only a spec, document or schema fix can
	// mend), at most RepairRate a second; the next generation rechecks the key. It should
	// converge the key forward (shadow.Engine.Converge, mapping a dead letter to an error).
	// Optional; default: report only.
	Repair func(ctx context.Context, key adapters.Key) error
	// RepairRate limits repairs per second. Optional; default 50.
	RepairRate float64
	// Partitions is how many parts each store's key space is split into. Optional; default 4.
	Partitions int
	// Batch is the most documents read and compared at once, and the most keys of a recheck
	// task. Optional; default 500.
	Batch int
	// Concurrency is the number of tasks this process works on at once. Optional; default 2.
	Concurrency int
	// Rate limits the documents the full pass reads from both stores, per second and per
	// process. Optional; default 0: unlimited.
	Rate float64
	// Settle is how long a difference may take to converge before it is a mismatch: one
	// first seen less than Settle ago is pending, and a recheck waits until it is that old.
	// Optional; default 0 (a difference seen twice is confirmed). In the shadow phase set it
	// to the converge lag.
	Settle time.Duration
	// MismatchBudget and MaxBacklog are recorded with a run the process starts, for the
	// report's verdict and the cutover gate's backlog bound (transform.VerifySpec). Optional.
	MismatchBudget, MaxBacklog int64
	// MaxGenerations bounds the recheck generations of a run; keys still differing then stay
	// pending (the backlog). Optional; default 10.
	MaxGenerations int
	// Lease is how long a claimed task stays claimed without a renewal (a crashed process's
	// tasks are taken over after it). Optional; default 30s.
	Lease time.Duration
	// Retries is how often this process retries a failing task (a store outage) before Run
	// gives up; the run stays unfinished and a later Run resumes it. Optional; default 5.
	Retries int
	// Plan is how the full pass reads the stores (the Plan constants). Optional; default
	// PlanAuto.
	Plan string
	// SpillDir is where the join plan keeps its bucket files (under
	// tandem-verify/MIGRATION/RUN): 29 bytes and the key twice per document of each store,
	// removed when the pass is done. Optional; default os.TempDir().
	SpillDir string
	// Buckets is the join plan's number of buckets (memory: one bucket of each store at a
	// time). Optional; default: the stores' estimated size ÷ 10,000, within 16–1024.
	Buckets int
	// CheckpointEvery is how often the join plan saves its checkpoint. Optional; default 1s.
	CheckpointEvery time.Duration
	// Owner names this process in leases. Optional; default the catalog's process id.
	Owner string
	// Logger receives a line per mismatch and per error. Optional; default: discarded.
	Logger *slog.Logger
	// Metrics receives counts and the drift gauges. Optional; default unregistered.
	Metrics *Metrics

	// Continuous-mode settings (Continuous).

	// SampleRate is the rolling sample's documents per second of the old store. Optional;
	// default 0: no sample.
	SampleRate float64
	// Poll is how often an idle worker looks for work. Optional; default 200ms.
	Poll time.Duration
	// DriftEvery is how often drift is recorded in continuous mode. Optional; default 10s.
	DriftEvery time.Duration
	// RecheckEvery is the least time between the starts of two generations of a continuous
	// run, so that a steady stream of changes makes a generation every few seconds rather
	// than one per Poll (each is a few catalog records). Optional; default 5s.
	RecheckEvery time.Duration

	// test hooks (export_test.go)
	afterRead     func(p pass, keys []adapters.Key)
	beforeRecheck func(keys []adapters.Key)
	afterBatch    func()
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
	for name, v := range map[string]float64{"Rate": c.Rate, "RepairRate": c.RepairRate, "SampleRate": c.SampleRate} {
		if v < 0 {
			return fmt.Errorf("%w: negative %s %v", ErrInvalidConfig, name, v)
		}
	}
	switch c.Plan {
	case PlanAuto, PlanMerge, PlanJoin, PlanLookup:
	default:
		return fmt.Errorf("%w: Plan %q: want %q, %q, %q or empty (automatic)", ErrInvalidConfig, c.Plan, PlanMerge, PlanJoin, PlanLookup)
	}
	if c.Buckets < 0 || c.Buckets > 1<<16 {
		return fmt.Errorf("%w: Buckets %d: want 0 (automatic) to 65536", ErrInvalidConfig, c.Buckets)
	}
	if c.Settle < 0 {
		return fmt.Errorf("%w: negative Settle %s", ErrInvalidConfig, c.Settle)
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
	if c.Lease <= 0 {
		c.Lease = DefaultLease
	}
	if c.MaxGenerations <= 0 {
		c.MaxGenerations = DefaultMaxGenerations
	}
	if c.RepairRate <= 0 {
		c.RepairRate = DefaultRepairRate
	}
	if c.Retries <= 0 {
		c.Retries = DefaultRetries
	}
	if c.Poll <= 0 {
		c.Poll = DefaultPoll
	}
	if c.DriftEvery <= 0 {
		c.DriftEvery = DefaultDriftEvery
	}
	if c.RecheckEvery <= 0 {
		c.RecheckEvery = DefaultRecheckEvery
	}
	if c.SpillDir == "" {
		c.SpillDir = os.TempDir()
	}
	if c.CheckpointEvery <= 0 {
		c.CheckpointEvery = DefaultCheckpointEvery
	}
	if c.Owner == "" {
		c.Owner = c.Catalog.ProcessID()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	c.Metrics.init(c.Migration)
	return c
}

// pass says which store a scan reads, for the afterRead hook.
type pass string

const (
	passOld pass = "old"
	passNew pass = "new"
)
