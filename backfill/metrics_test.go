package backfill_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/backfill"
)

// TestMetricsByMigration runs two migrations' backfills on one Metrics, as `tandem run` does
// with several specs, and checks that each series names its migration: the stalled-backfill
// alert says which backfill stalled. A migration's counters exist at 0 from backfill.New on,
// before it copied anything, so that a rate over them sees the first documents.
func TestMetricsByMigration(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := backfill.NewMetrics(reg)
	a, b := newEnv(t, ""), newEnv(t, "")
	a.seed(t, 30)
	b.seed(t, 70)

	cfgB := b.config()
	cfgB.Metrics = m
	_, err := backfill.New(cfgB) // built, not run yet
	require.NoError(t, err)
	assert.Equal(t, 0.0, testutil.ToFloat64(m.Documents(b.migration, "copied")))
	assert.Equal(t, 0.0, testutil.ToFloat64(m.Errors(b.migration, "write")))

	cfgA := a.config()
	cfgA.Metrics = m
	sum, err := backfill.Run(context.Background(), cfgA)
	require.NoError(t, err)
	require.Equal(t, int64(30), sum.Copied)
	sum, err = backfill.Run(context.Background(), cfgB)
	require.NoError(t, err)
	require.Equal(t, int64(70), sum.Copied)

	for _, c := range []struct {
		migration string
		copied    float64
	}{{a.migration, 30}, {b.migration, 70}} {
		assert.Equal(t, c.copied, testutil.ToFloat64(m.Documents(c.migration, "copied")), "copied by %s", c.migration)
		assert.Equal(t, 0.0, testutil.ToFloat64(m.Documents(c.migration, "dead_lettered")), "dead letters of %s", c.migration)
	}
	got, err := testutil.GatherAndCount(reg, "tandem_backfill_partitions", "tandem_backfill_partitions_done", "tandem_backfill_paused")
	require.NoError(t, err)
	assert.Equal(t, 6, got, "three gauges for each of two migrations")

	// Every backfill series carries the migration label.
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if !strings.HasPrefix(f.GetName(), "tandem_backfill_") {
			continue
		}
		for _, s := range f.GetMetric() {
			found := false
			for _, l := range s.GetLabel() {
				found = found || (l.GetName() == "migration" && (l.GetValue() == a.migration || l.GetValue() == b.migration))
			}
			assert.True(t, found, "%s%v has no migration label", f.GetName(), s.GetLabel())
		}
	}
}
