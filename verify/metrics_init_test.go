package verify

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/catalog"
)

// TestFoundSeriesExistFromTheStart: a verifier's configuration creates its migration's
// differences-found counters (every kind) and repair counters at 0, so that the mismatch
// alert's rate sees the first difference.
func TestFoundSeriesExistFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	Config{Migration: "users-v2", Metrics: m, Owner: "test"}.withDefaults()
	n, err := testutil.GatherAndCount(reg, "tandem_verify_found_total")
	require.NoError(t, err)
	assert.Equal(t, len(catalog.MismatchKinds), n)
	assert.Zero(t, testutil.ToFloat64(m.found.WithLabelValues("users-v2", string(catalog.KindMissing))))
	n, err = testutil.GatherAndCount(reg, "tandem_verify_repairs_total")
	require.NoError(t, err)
	assert.Equal(t, 2, n)
}
