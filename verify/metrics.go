package verify

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemdb/tandem/catalog"
)

// Metrics are the verifier's Prometheus collectors. The gauges are the drift: the mismatches
// outstanding over time, as the newest computation of the run's state saw them.
type Metrics struct {
	compared  *prometheus.CounterVec
	found     *prometheus.CounterVec
	repairs   *prometheus.CounterVec
	confirmed *prometheus.GaugeVec
	pending   *prometheus.GaugeVec
	backlog   *prometheus.GaugeVec
}

// NewMetrics builds the collectors and registers them with reg, unless reg is nil. One
// Metrics serves every migration of a process (the migration is a label).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		compared: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_verify_compared_total",
			Help: "Keys compared by verification, by migration and task kind (old, new, both, recheck, sample).",
		}, []string{"migration", "task"}),
		found: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_verify_found_total",
			Help: "Differences seen by verification (pending at first), by migration and kind.",
		}, []string{"migration", "kind"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_verify_repairs_total",
			Help: "Repairs of confirmed verification mismatches, by migration and result (repaired, failed).",
		}, []string{"migration", "result"}),
		confirmed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_verify_confirmed_mismatches",
			Help: "Confirmed verification mismatches outstanding in the newest run (the drift), by migration.",
		}, []string{"migration"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_verify_pending_mismatches",
			Help: "Verification differences seen but not yet confirmed (younger than the settle time), by migration.",
		}, []string{"migration"}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_verify_recheck_backlog",
			Help: "Keys waiting for a verification recheck, by migration.",
		}, []string{"migration"}),
	}
	if reg != nil {
		reg.MustRegister(m.compared, m.found, m.repairs, m.confirmed, m.pending, m.backlog)
	}
	return m
}

// init creates a migration's counters of differences found (every kind) and of repairs at 0:
// a rate over a series that appears with its first increment misses that increment, and the
// mismatch alert and dashboard need the series before the first mismatch.
func (m *Metrics) init(migration string) {
	for _, k := range catalog.MismatchKinds {
		m.found.WithLabelValues(migration, string(k))
	}
	for _, r := range []string{"repaired", "failed"} {
		m.repairs.WithLabelValues(migration, r)
	}
}

// Confirmed is the gauge of a migration's confirmed mismatches outstanding (the drift).
func (m *Metrics) Confirmed(migration string) prometheus.Gauge {
	return m.confirmed.WithLabelValues(migration)
}
