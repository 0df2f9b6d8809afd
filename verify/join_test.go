package verify_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/verify"
)

// TestJoinScansAgainWhenTheSpillIsDamaged: every spill file is damaged right after the scans
// are done; the join fails on its first bucket, drops its checkpoint, and the next attempt
// scans both stores again and finds exactly what was planted, each key counted once.
func TestJoinScansAgainWhenTheSpillIsDamaged(t *testing.T) {
	f := newFixture(t)
	n := 200
	want := f.plant(t, n)
	spill := t.TempDir()
	cfg := f.config()
	cfg.Plan, cfg.SpillDir, cfg.Buckets = verify.PlanJoin, spill, 4
	cfg.CheckpointEvery = time.Hour // the first checkpoint is the one that ends the scans
	calls, damaged := 0, 0
	verify.SetAfterBatch(&cfg, func() {
		calls++
		if calls != 1 {
			return
		}
		files, err := filepath.Glob(filepath.Join(spill, "tandem-verify", "*", "*", "*", "*"))
		require.NoError(t, err)
		for _, file := range files {
			b, err := os.ReadFile(file)
			require.NoError(t, err)
			if len(b) > 20 {
				b[20] ^= 0xff // inside the first record's digest: its checksum fails
				require.NoError(t, os.WriteFile(file, b, 0o600))
				damaged++
			}
		}
	})
	sum, err := verify.Run(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, 2*4, damaged, "every bucket of both stores had records")
	assert.GreaterOrEqual(t, calls, 3, "two ends of scans, then the buckets")
	f.assertFoundExactly(t, want)
	assert.Equal(t, int64(n+n/50), sum.Keys, "each key counted once, though scanned twice")
	assert.Contains(t, f.state(t).LastError, "spill record damaged")
}
