package shadow

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the converge engine's collectors, registered by the caller.
type Metrics struct {
	results  *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

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
	}
	if reg != nil {
		reg.MustRegister(m.results, m.duration)
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
