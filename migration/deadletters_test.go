package migration_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/migration"
)

// TestDeadLetterCollectorCountsTheCatalog records dead letters in a real catalog, as converge
// does, and reads them back through the collector: a series per migration and direction, 0
// included, and resolved ones gone from the count.
func TestDeadLetterCollectorCountsTheCatalog(t *testing.T) {
	ctx := context.Background()
	cat, err := catalog.Open(ctx, client, catalog.WithDatabase(fmt.Sprintf("tandem_deadletters_test_%d", dbSeq.Add(1))))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Database(cat.Database()).Drop(ctx) })
	for _, k := range []string{"a", "b", "c"} {
		require.NoError(t, cat.AddDeadLetter(ctx, catalog.DeadLetter{Migration: "users-v2", KeyString: k, Key: k, Direction: catalog.DirectionForward, Step: "forward[0]", Reason: "test"}))
	}
	require.NoError(t, cat.AddDeadLetter(ctx, catalog.DeadLetter{Migration: "users-v2", KeyString: "r", Key: "r", Direction: catalog.DirectionReverse, Step: "write", Reason: "test"}))
	require.NoError(t, cat.ResolveDeadLetter(ctx, "users-v2", catalog.DirectionForward, "c"))

	reg := prometheus.NewRegistry()
	c := migration.NewDeadLetterCollector(cat, []string{"users-v2", "orders-v3"}, time.Nanosecond, 0, nil)
	reg.MustRegister(c)
	want := `
# HELP tandem_dead_letters Dead letters not yet resolved, in the catalog (every process's), by migration and direction (forward, reverse).
# TYPE tandem_dead_letters gauge
tandem_dead_letters{direction="forward",migration="orders-v3"} 0
tandem_dead_letters{direction="forward",migration="users-v2"} 2
tandem_dead_letters{direction="reverse",migration="orders-v3"} 0
tandem_dead_letters{direction="reverse",migration="users-v2"} 1
`
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want), "tandem_dead_letters"))
}

// fakeCounter counts calls and fails while err is set.
type fakeCounter struct {
	mu    sync.Mutex
	n     map[string]int64
	err   error
	calls int
}

func (f *fakeCounter) CountDeadLettersByDirection(_ context.Context, migration, direction string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return 0, f.err
	}
	return f.n[migration+"/"+direction], nil
}

func (f *fakeCounter) set(key string, n int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n[key], f.err = n, err
}

// TestDeadLetterCollectorCachesAndKeepsLastCount checks the collector's two promises to the
// catalog and to the alert: scrapes within maxAge reuse the last counts (no catalog read), and
// an unreachable catalog leaves the last counts exported, with the failures counted, until it
// answers again.
func TestDeadLetterCollectorCachesAndKeepsLastCount(t *testing.T) {
	f := &fakeCounter{n: map[string]int64{"m/forward": 5}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(migration.NewDeadLetterCollector(f, []string{"m"}, time.Hour, time.Second, nil))
	var countErrors float64 // tandem_dead_letters_count_errors_total at the last value()
	value := func() float64 {
		t.Helper()
		families, err := reg.Gather()
		require.NoError(t, err)
		forward := -1.0
		for _, fam := range families {
			switch fam.GetName() {
			case "tandem_dead_letters_count_errors_total":
				countErrors = fam.GetMetric()[0].GetCounter().GetValue()
			case "tandem_dead_letters":
				for _, m := range fam.GetMetric() {
					for _, l := range m.GetLabel() {
						if l.GetName() == "direction" && l.GetValue() == "forward" {
							forward = m.GetGauge().GetValue()
						}
					}
				}
			}
		}
		require.GreaterOrEqual(t, forward, 0.0, "no tandem_dead_letters{direction=forward} series")
		return forward
	}
	assert.Equal(t, 5.0, value())
	assert.Equal(t, 2, f.calls, "one count per direction")
	f.set("m/forward", 7, nil)
	assert.Equal(t, 5.0, value(), "within maxAge the last count is reused")
	assert.Equal(t, 2, f.calls, "no catalog read within maxAge")

	// A collector that refreshes at every scrape, against a catalog that fails.
	f2 := &fakeCounter{n: map[string]int64{"m/forward": 3}}
	reg = prometheus.NewRegistry()
	reg.MustRegister(migration.NewDeadLetterCollector(f2, []string{"m"}, time.Nanosecond, time.Second, nil))
	assert.Equal(t, 3.0, value())
	f2.set("m/forward", 9, errors.New("catalog unreachable"))
	assert.Equal(t, 3.0, value(), "the last count known while the catalog fails")
	assert.Equal(t, 2.0, countErrors, "both directions' counts failed")
	f2.set("m/forward", 9, nil)
	assert.Equal(t, 9.0, value(), "a fresh count once the catalog answers")
}
