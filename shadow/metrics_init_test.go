package shadow_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/shadow"
)

// TestSeriesExistFromTheStart: converge results (both directions) and shadow-read results
// exist at 0 once the metrics are built, so that the dashboard's rates see the first ones.
func TestSeriesExistFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	shadow.NewMetrics(reg)
	n, err := testutil.GatherAndCount(reg, "tandem_converge_total")
	require.NoError(t, err)
	assert.Equal(t, 2*(len(shadow.Actions)+1), n, "every action and failed, in each of two directions")
	n, err = testutil.GatherAndCount(reg, "tandem_shadow_reads_total")
	require.NoError(t, err)
	assert.Equal(t, 4, n, "match, mismatch, dropped, error")
}
