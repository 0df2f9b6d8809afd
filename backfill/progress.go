package backfill

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemdb/tandem/catalog"
)

// States of a backfill in Progress.
const (
	StateRunning = "running" // partitions left, not paused
	StatePaused  = "paused"
	StateDone    = "done" // every partition copied
)

// Progress is a backfill's state over every process, as the catalog has it; a status command in
// another terminal reads it with Status.
type Progress struct {
	Migration string    `json:"migration"`
	PlanID    string    `json:"plan_id"`
	State     string    `json:"state"`
	StartedAt time.Time `json:"started_at"`
	// Paused, Rate and BytesRate are the control state (0: unlimited).
	Paused    bool    `json:"paused"`
	Rate      float64 `json:"rate"`
	BytesRate float64 `json:"bytes_rate"`

	Partitions       int `json:"partitions"`
	PartitionsDone   int `json:"partitions_done"`
	PartitionsActive int `json:"partitions_active"` // held by a live lease
	// Estimate is the number of source documents when the plan was made.
	Estimate int64 `json:"estimate"`
	// Copied, Bytes, DeadLettered, Reconverged and Errors sum the partitions' counters up to
	// their checkpoints (see catalog.BackfillLease).
	Copied       int64 `json:"copied"`
	Bytes        int64 `json:"bytes"`
	DeadLettered int64 `json:"dead_lettered"`
	Reconverged  int64 `json:"reconverged"`
	Errors       int64 `json:"errors"`
	// DocsPerSec and BytesPerSec sum the running processes' last reports (10 s averages).
	DocsPerSec  float64 `json:"docs_per_sec"`
	BytesPerSec float64 `json:"bytes_per_sec"`
	// ETA is the estimated time left at DocsPerSec; 0 when unknown.
	ETA time.Duration `json:"eta_ns"`
	// Runners are the processes that reported within the last few seconds.
	Runners []catalog.BackfillRunner `json:"runners,omitempty"`
}

// Status reads a backfill's progress; ErrNotStarted when it has no plan.
func Status(ctx context.Context, c *catalog.Catalog, migration string) (Progress, error) {
	st, err := readState(ctx, c, migration, false)
	if err != nil {
		return Progress{}, err
	}
	return progressOf(migration, st, time.Now()), nil
}

// state is what the catalog holds of a backfill: its plan, each partition's newest lease, the
// processes' reports and, when asked for, the partitions.
type state struct {
	plan    catalog.BackfillPlan
	parts   []catalog.BackfillPartition
	leases  map[int]catalog.BackfillLease
	runners []catalog.BackfillRunner
}

func readState(ctx context.Context, c *catalog.Catalog, migration string, withParts bool) (state, error) {
	var st state
	var err error
	if st.plan, err = c.BackfillPlan(ctx, migration); err != nil {
		return st, fmt.Errorf("backfill status of %s: %w", migration, mapNotFound(err))
	}
	if withParts {
		if st.parts, err = c.BackfillPartitions(ctx, migration, st.plan.PlanID); err != nil {
			return st, err
		}
	}
	if st.leases, err = c.BackfillLeases(ctx, migration, st.plan.PlanID); err != nil {
		return st, err
	}
	st.runners, err = c.BackfillRunners(ctx, migration)
	return st, err
}

func progressOf(migration string, st state, now time.Time) Progress {
	plan := st.plan
	p := Progress{
		Migration: migration, PlanID: plan.PlanID, StartedAt: plan.CreatedAt, Partitions: plan.Partitions,
		Estimate: plan.Estimate, Paused: plan.Control.Paused, Rate: plan.Control.Rate, BytesRate: plan.Control.BytesRate,
	}
	for _, l := range st.leases {
		if l.Done {
			p.PartitionsDone++
		} else if now.Before(l.ExpiresAt) {
			p.PartitionsActive++
		}
		p.Copied += l.Copied
		p.Bytes += l.Bytes
		p.DeadLettered += l.DeadLettered
		p.Reconverged += l.Reconverged
		p.Errors += l.Errors
	}
	for _, r := range st.runners {
		if now.Sub(r.UpdatedAt) < staleAfter(DefaultPoll) && r.State != "done" && r.State != "stopped" {
			p.Runners = append(p.Runners, r)
			p.DocsPerSec += r.DocsPerSec
			p.BytesPerSec += r.BytesPerSec
		}
	}
	switch {
	case p.PartitionsDone == p.Partitions:
		p.State = StateDone
	case p.Paused:
		p.State = StatePaused
	default:
		p.State = StateRunning
	}
	if left := p.Estimate - p.Copied - p.DeadLettered; p.State != StateDone && left > 0 && p.DocsPerSec > 0 {
		p.ETA = time.Duration(float64(left) / p.DocsPerSec * float64(time.Second))
	}
	return p
}

// Metrics are the backfill's Prometheus collectors, registered by the caller. One Metrics serves
// every migration of a process: each series has a migration label, so that an alert on a stalled
// backfill can say which one.
type Metrics struct {
	documents       *prometheus.CounterVec
	bytes           *prometheus.CounterVec
	errors          *prometheus.CounterVec
	writeLatency    *prometheus.HistogramVec
	partitionsTotal *prometheus.GaugeVec
	partitionsDone  *prometheus.GaugeVec
	paused          *prometheus.GaugeVec
	rateLimit       *prometheus.GaugeVec
	adaptiveLimit   *prometheus.GaugeVec
	docsPerSec      *prometheus.GaugeVec
}

// The label values of tandem_backfill_documents_total and tandem_backfill_errors_total, each
// series created at 0 for a migration as soon as its backfill is built: a rate over a series
// that appears only with its first increment misses that increment.
var (
	documentResults = []string{"copied", "dead_lettered", "reconverged"}
	errorKinds      = []string{"read", "write", "reconverge", "catalog"}
)

// NewMetrics creates the collectors and registers them with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	mig := []string{"migration"}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, mig)
	}
	m := &Metrics{
		documents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_backfill_documents_total",
			Help: "Documents of checkpointed batches by this process, by migration and result (copied, dead_lettered, reconverged).",
		}, []string{"migration", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_backfill_bytes_total",
			Help: "Bytes (the target's BSON) of the documents copied by this process, by migration.",
		}, mig),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_backfill_errors_total",
			Help: "Failures retried, by migration and kind (read, write, reconverge, catalog).",
		}, []string{"migration", "kind"}),
		writeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tandem_backfill_write_duration_seconds",
			Help:    "Duration of one bulk write of a chunk to the target, by migration.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, mig),
		partitionsTotal: gauge("tandem_backfill_partitions", "Partitions of the backfill plan, by migration."),
		partitionsDone:  gauge("tandem_backfill_partitions_done", "Partitions copied, by any process, when this process last looked, by migration."),
		paused:          gauge("tandem_backfill_paused", "1 while the migration's backfill is paused."),
		rateLimit:       gauge("tandem_backfill_rate_limit", "This process's current limit in documents/s (+Inf: none), by migration."),
		adaptiveLimit:   gauge("tandem_backfill_adaptive_limit", "The adaptive limiter's limit in documents/s (+Inf: not limiting), by migration."),
		docsPerSec:      gauge("tandem_backfill_documents_per_second", "Documents copied per second by this process, over the last 10 s, by migration."),
	}
	if reg != nil {
		reg.MustRegister(m.documents, m.bytes, m.errors, m.writeLatency, m.partitionsTotal, m.partitionsDone, m.paused, m.rateLimit, m.adaptiveLimit, m.docsPerSec)
	}
	return m
}

// migrationMetrics are the collectors of one migration's backfill: Metrics with the migration
// label filled in.
type migrationMetrics struct {
	documents       *prometheus.CounterVec // by result
	bytes           prometheus.Counter
	errors          *prometheus.CounterVec // by kind
	writeLatency    prometheus.Observer
	partitionsTotal prometheus.Gauge
	partitionsDone  prometheus.Gauge
	paused          prometheus.Gauge
	// The limits are curried with every label (set them WithLabelValues()), so that their
	// series appear only when the throttle first sets them: a limit of 0 before that would read
	// as "stopped".
	rateLimit     *prometheus.GaugeVec
	adaptiveLimit *prometheus.GaugeVec
	docsPerSec    prometheus.Gauge
}

// forMigration returns the collectors of one migration, creating its counters and its
// partition, pause and rate gauges at 0 (true before the plan is read: nothing to copy, not
// paused, nothing copied yet).
func (m *Metrics) forMigration(migration string) *migrationMetrics {
	l := prometheus.Labels{"migration": migration}
	mm := &migrationMetrics{
		documents:       m.documents.MustCurryWith(l),
		bytes:           m.bytes.With(l),
		errors:          m.errors.MustCurryWith(l),
		writeLatency:    m.writeLatency.With(l),
		partitionsTotal: m.partitionsTotal.With(l),
		partitionsDone:  m.partitionsDone.With(l),
		paused:          m.paused.With(l),
		rateLimit:       m.rateLimit.MustCurryWith(l),
		adaptiveLimit:   m.adaptiveLimit.MustCurryWith(l),
		docsPerSec:      m.docsPerSec.With(l),
	}
	for _, r := range documentResults {
		mm.documents.WithLabelValues(r)
	}
	for _, k := range errorKinds {
		mm.errors.WithLabelValues(k)
	}
	return mm
}
