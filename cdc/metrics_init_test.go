package cdc_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/shadow"
)

// TestAlertSeriesExistFromTheStart: the series the alerts and the dashboard read (a tailer's
// stopped gauge and apply failures, the journal worker's failures and results) exist at 0 as
// soon as the tailer or worker is built, before anything ran: a rate over a series that
// appears with its first increment misses that increment, and an alert on "stopped == 1" can
// be checked against a 0.
func TestAlertSeriesExistFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := cdc.NewTailer(cdc.TailerConfig{
		Migration: "users-v2", Direction: shadow.Reverse, Source: &fakeSource{}, Engine: (*shadow.Engine)(nil),
		Checkpoints: (*catalog.Catalog)(nil), Metrics: cdc.NewTailerMetrics(reg),
	})
	require.NoError(t, err)
	count := func(name string) int {
		t.Helper()
		n, err := testutil.GatherAndCount(reg, name)
		require.NoError(t, err)
		return n
	}
	assert.Equal(t, 3, count("tandem_cdc_stopped"), "one series per stopped state")
	assert.Equal(t, 1, count("tandem_cdc_apply_failures_total"))
	assert.Zero(t, metric(t, reg, "tandem_cdc_stopped", map[string]string{"migration": "users-v2", "direction": "reverse"}))

	_, err = cdc.NewJournalWorker(cdc.JournalWorkerConfig{
		Journal: (*adapters.KafkaJournal)(nil), Engines: cdc.EngineMap(nil),
		Migrations: []string{"users-v2", "orders-v3"}, Metrics: cdc.NewWorkerMetrics(reg),
	})
	require.NoError(t, err)
	assert.Equal(t, 2, count("tandem_journal_worker_batch_failures_total"), "one per migration")
	assert.Equal(t, 2*len(shadow.Actions), count("tandem_journal_worker_keys_total"), "every converge action per migration")
}
