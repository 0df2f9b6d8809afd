package migration

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemdb/tandem/catalog"
)

// DeadLetterCounter counts a migration's unresolved dead letters in one direction
// (*catalog.Catalog).
type DeadLetterCounter interface {
	CountDeadLettersByDirection(ctx context.Context, migration, direction string) (int64, error)
}

// Defaults of DeadLetterCollector.
const (
	DefaultDeadLetterMaxAge  = 10 * time.Second
	DefaultDeadLetterTimeout = 2 * time.Second
)

// DeadLetterCollector exports tandem_dead_letters{migration,direction}: the dead letters the
// catalog holds, counted when Prometheus scrapes. Dead letters are written and resolved by
// every process of a deployment (converge, the backfill, the tailers, the journal workers), so
// only the catalog knows how many are left; a counter per process could not say that.
//
// A scrape reuses counts younger than MaxAge, so that several scrapers (or a dashboard's
// refresh) cost the catalog one count per migration and direction every MaxAge. Each refresh
// is bounded by Timeout; when a count fails, the last one known is exported again and
// tandem_dead_letters_count_errors_total goes up (the flags' staleness alert says the catalog
// is away), and a series never counted is left out rather than exported as 0.
type DeadLetterCollector struct {
	counter    DeadLetterCounter
	migrations []string
	maxAge     time.Duration
	timeout    time.Duration
	log        *slog.Logger

	desc   *prometheus.Desc
	errors prometheus.Counter

	mu      sync.Mutex
	counted time.Time                    // when last refreshed
	counts  map[deadLetterSeries]float64 // the last count of each series that succeeded
	failing bool                         // the last refresh failed (logged once per outage)
}

type deadLetterSeries struct{ migration, direction string }

var deadLetterDirections = []string{catalog.DirectionForward, catalog.DirectionReverse}

// NewDeadLetterCollector returns the collector of migrations' dead letters; maxAge and timeout
// 0 take the defaults, log nil discards. Register it (and only one per process) with the
// registry /metrics serves.
func NewDeadLetterCollector(counter DeadLetterCounter, migrations []string, maxAge, timeout time.Duration, log *slog.Logger) *DeadLetterCollector {
	if maxAge <= 0 {
		maxAge = DefaultDeadLetterMaxAge
	}
	if timeout <= 0 {
		timeout = DefaultDeadLetterTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &DeadLetterCollector{
		counter: counter, migrations: append([]string(nil), migrations...), maxAge: maxAge, timeout: timeout, log: log,
		desc: prometheus.NewDesc("tandem_dead_letters",
			"Dead letters not yet resolved, in the catalog (every process's), by migration and direction (forward, reverse).",
			[]string{"migration", "direction"}, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_dead_letters_count_errors_total",
			Help: "Counts of dead letters in the catalog that failed (the last count known is exported meanwhile).",
		}),
		counts: map[deadLetterSeries]float64{},
	}
}

// Describe implements prometheus.Collector.
func (c *DeadLetterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.desc
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector: the counts, refreshed first when older than maxAge.
func (c *DeadLetterCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.counted) >= c.maxAge {
		c.refresh()
	}
	for _, m := range c.migrations {
		for _, d := range deadLetterDirections {
			if v, ok := c.counts[deadLetterSeries{m, d}]; ok {
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, m, d)
			}
		}
	}
	c.errors.Collect(ch)
}

// refresh counts every series again within one timeout; c.mu is held.
func (c *DeadLetterCollector) refresh() {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	var firstErr error
	for _, m := range c.migrations {
		for _, d := range deadLetterDirections {
			n, err := c.counter.CountDeadLettersByDirection(ctx, m, d)
			if err != nil {
				c.errors.Inc()
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			c.counts[deadLetterSeries{m, d}] = float64(n)
		}
	}
	switch {
	case firstErr != nil && !c.failing:
		c.log.Warn("counting dead letters for /metrics failed; exporting the last counts known until the catalog answers", "err", firstErr)
	case firstErr == nil && c.failing:
		c.log.Info("counting dead letters for /metrics works again")
	}
	c.failing = firstErr != nil
	// A failed refresh is tried again at the next scrape, not after maxAge.
	if firstErr == nil {
		c.counted = time.Now()
	}
}
