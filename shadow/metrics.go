package shadow

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the collectors of package shadow (the converge engine, the Writer and the
// Comparer), registered by the caller. One Metrics is meant to be shared by all three.
type Metrics struct {
	results  *prometheus.CounterVec
	duration *prometheus.HistogramVec

	writes    *prometheus.CounterVec
	journaled *prometheus.CounterVec
	backlog   prometheus.Gauge
	reads     *prometheus.CounterVec
	repairs   *prometheus.CounterVec
}

// Label values of tandem_shadow_writes_total's result.
const (
	writeConverged    = "converged"     // the key's target is in line with its source
	writeJournaled    = "journaled"     // the key went to the journal, for a converge worker
	writeDeadLettered = "dead_lettered" // the key is recorded as a dead letter
	writeLost         = "lost"          // neither journal nor dead letters took it (logged at error)
)

// Label values of tandem_shadow_reads_total's result.
const (
	readMatch    = "match"
	readMismatch = "mismatch"
	readDropped  = "dropped"
	readError    = "error"
)

// NewMetrics creates the collectors and registers them with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_converge_total",
			Help: "Keys converged, by direction and result (upserted, unchanged, deleted, dead_lettered, failed).",
		}, []string{"direction", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tandem_converge_duration_seconds",
			Help:    "Time to converge one key (for a batch, its time divided by its keys), by direction.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"direction"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_shadow_writes_total",
			Help: "Keys written through the proxy, by mode (async, sync, unkeyed) and final result (converged, journaled, dead_lettered, lost).",
		}, []string{"mode", "result"}),
		journaled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_shadow_journaled_total",
			Help: "Journal entries appended, by reason (queue_full, converge_failed, unkeyed_write).",
		}, []string{"reason"}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_shadow_journal_backlog",
			Help: "Journal entries waiting in memory for the journal (or, failing it, the dead letters).",
		}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_shadow_reads_total",
			Help: "Documents read from the old store and compared with the new, by result (match, mismatch, dropped, error).",
		}, []string{"result"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_shadow_read_repairs_total",
			Help: "Repairs of mismatches found by shadow reads, by result (repaired, failed).",
		}, []string{"result"}),
	}
	// The series dashboards and alerts take rates of exist at 0 from the start: a rate over a
	// series that appears with its first increment misses that increment.
	for _, dir := range []Direction{Forward, Reverse} {
		for _, a := range Actions {
			m.results.WithLabelValues(dir.String(), a.String())
		}
		m.results.WithLabelValues(dir.String(), "failed")
	}
	for _, r := range []string{readMatch, readMismatch, readDropped, readError} {
		m.reads.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.results, m.duration, m.writes, m.journaled, m.backlog, m.reads, m.repairs)
	}
	return m
}

func (m *Metrics) observe(dir Direction, a Action, err error, d time.Duration) {
	result := a.String()
	if err != nil {
		result = "failed"
	}
	m.results.WithLabelValues(dir.String(), result).Inc()
	m.duration.WithLabelValues(dir.String()).Observe(d.Seconds())
}
