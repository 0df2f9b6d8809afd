package cdc

import "github.com/prometheus/client_golang/prometheus"

// TailerMetrics are the collectors of every tailer of a process (both directions, every
// migration), registered by the caller once.
type TailerMetrics struct {
	changes   *prometheus.CounterVec
	results   *prometheus.CounterVec
	interplay *prometheus.CounterVec
	failures  *prometheus.CounterVec
	skipped   *prometheus.CounterVec
	lag       *prometheus.GaugeVec
	stopped   *prometheus.GaugeVec
}

// NewTailerMetrics creates the collectors and registers them with reg (nil: unregistered).
func NewTailerMetrics(reg prometheus.Registerer) *TailerMetrics {
	m := &TailerMetrics{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_cdc_changes_total",
			Help: "Changes a tailer received from its source, by migration, direction and op (a batch applied again after a restart counts again).",
		}, []string{"migration", "direction", "op"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_cdc_converged_total",
			Help: "Keys a tailer converged, by migration, direction and result (upserted, unchanged, echo, deleted, dead_lettered; published: handed to the journal, whose workers converge it).",
		}, []string{"migration", "direction", "result"}),
		interplay: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_cdc_backfill_interplay_total",
			Help: "Forward changes the backfill will copy (left_to_copy) or that waited for a batch being copied (after_batch), by migration.",
		}, []string{"migration", "disposition"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_cdc_apply_failures_total",
			Help: "Batches a tailer failed to converge or checkpoint (the path restarts from its checkpoint), by migration and direction.",
		}, []string{"migration", "direction"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_cdc_events_skipped_total",
			Help: "Change events a source passed over, each logged, by migration, direction and reason (e.g. unknown_kind).",
		}, []string{"migration", "direction", "reason"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_cdc_lag_seconds",
			Help: "How far a tailer is behind its source: now minus the time of the newest change applied, 0 when caught up.",
		}, []string{"migration", "direction"}),
		stopped: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_cdc_stopped",
			Help: "1 when a tailer stopped for good and needs an operator (state history_lost, invalidated or bad_event), else 0: alert on it.",
		}, []string{"migration", "direction", "state"}),
	}
	if reg != nil {
		reg.MustRegister(m.changes, m.results, m.interplay, m.failures, m.skipped, m.lag, m.stopped)
	}
	return m
}

// Skipped counts an event a source passed over (its Run logs it): sources call it with their
// tailer's metrics.
func (m *TailerMetrics) Skipped(migration, direction, reason string) {
	m.skipped.WithLabelValues(migration, direction, reason).Inc()
}
