package backfill_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
)

// TestPauseResumeRate pauses a running backfill (every worker stops within a second), resumes
// it, and raises its rate without a restart; each change is audited.
func TestPauseResumeRate(t *testing.T) {
	e := newEnv(t, "")
	e.seed(t, 400)
	ctx := context.Background()
	cfg := e.config()
	// A low rate for the whole backfill (FerretDB copies 25–60 documents a second under the
	// race detector, 350 without), in small steps for a smooth count.
	slowRate := 15.0
	if raceEnabled {
		slowRate = 5
	}
	cfg.Rate = slowRate
	cfg.Batch, cfg.Chunk = 20, 5
	done := make(chan error, 1)
	go func() { _, err := backfill.Run(ctx, cfg); done <- err }()

	waitFor(t, 20*time.Second, func() bool { return count(t, e.dst) >= 30 })
	require.NoError(t, backfill.Pause(ctx, e.cat, e.migration, "alice", "load test at noon"))
	assert.ErrorIs(t, backfill.Pause(ctx, e.cat, e.migration, "alice", "again"), backfill.ErrAlreadyPaused)
	time.Sleep(time.Second) // every worker obeys within a second
	before := count(t, e.dst)
	time.Sleep(1500 * time.Millisecond)
	assert.Equal(t, before, count(t, e.dst), "nothing is written while paused")
	p, err := backfill.Status(ctx, e.cat, e.migration)
	require.NoError(t, err)
	assert.Equal(t, backfill.StatePaused, p.State)

	require.NoError(t, backfill.Resume(ctx, e.cat, e.migration, "alice", "load test over"))
	assert.ErrorIs(t, backfill.Resume(ctx, e.cat, e.migration, "alice", "again"), backfill.ErrNotPaused)
	// At the low rate: measure, then raise the rate and measure again.
	slow := rateOver(t, e, 4*time.Second)
	require.NoError(t, backfill.SetRate(ctx, e.cat, e.migration, 2000, "bob", "faster"))
	time.Sleep(200 * time.Millisecond)
	fast := rateOver(t, e, 2*time.Second)
	t.Logf("documents/s at rate %v: %.0f; after SetRate 2000: %.0f", slowRate, slow, fast)
	assert.InDelta(t, slowRate, slow, 0.8*slowRate)
	assert.Greater(t, fast, 2*slow)
	require.NoError(t, <-done)
	e.checkCopy(t)

	audit, err := e.cat.Audit(ctx, e.migration, 0)
	require.NoError(t, err)
	var got []string
	for _, a := range audit {
		if a.Kind == catalog.KindBackfill {
			got = append(got, a.Who+" "+a.Subject+" "+a.From+"→"+a.To+" ("+a.Why+")")
		}
	}
	assert.Equal(t, []string{
		cfg.Catalog.ProcessID() + " rate unlimited→" + strconv.FormatFloat(slowRate, 'g', -1, 64) + " (backfill run with --rate)",
		"alice paused false→true (load test at noon)",
		"alice paused true→false (load test over)",
		"bob rate " + strconv.FormatFloat(slowRate, 'g', -1, 64) + "→2000 (faster)",
	}, got)

	assert.ErrorIs(t, backfill.Pause(ctx, e.cat, e.migration, "alice", "too late"), backfill.ErrFinished)
}

func rateOver(t *testing.T, e *env, d time.Duration) float64 {
	a := count(t, e.dst)
	time.Sleep(d)
	return float64(count(t, e.dst)-a) / d.Seconds()
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBadInput covers what the backfill refuses.
func TestBadInput(t *testing.T) {
	ctx := context.Background()
	t.Run("source collection missing", func(t *testing.T) {
		e := newEnv(t, "")
		_, err := backfill.Run(ctx, e.config())
		assert.ErrorIs(t, err, backfill.ErrSourceMissing)
		assert.ErrorContains(t, err, e.db+".users")
	})
	t.Run("target not empty", func(t *testing.T) {
		e := newEnv(t, "")
		e.seed(t, 10)
		_, err := e.dst.InsertOne(ctx, map[string]any{"_id": "stranger"})
		require.NoError(t, err)
		_, err = backfill.Run(ctx, e.config())
		assert.ErrorIs(t, err, backfill.ErrTargetNotEmpty)
		assert.ErrorContains(t, err, "--allow-existing")
		cfg := e.config()
		cfg.AllowExisting = true
		sum, err := backfill.Run(ctx, cfg)
		require.NoError(t, err)
		assert.Equal(t, int64(10), sum.Copied)
		e.checkCopy(t, `"stranger"`)
	})
	t.Run("rates of 0 or less", func(t *testing.T) {
		e := newEnv(t, "")
		e.seed(t, 5)
		cfg := e.config()
		cfg.Rate = -1
		_, err := backfill.Run(ctx, cfg)
		assert.ErrorIs(t, err, backfill.ErrInvalidRate)
		assert.ErrorContains(t, err, "--rate")
		_, err = backfill.Run(ctx, e.config())
		require.NoError(t, err)
		for _, r := range []float64{0, -5} {
			err = backfill.SetRate(ctx, e.cat, e.migration, r, "x", "y")
			assert.ErrorIs(t, err, backfill.ErrInvalidRate)
			assert.ErrorContains(t, err, "--rate must be more than 0")
			assert.ErrorContains(t, backfill.SetBytesRate(ctx, e.cat, e.migration, r, "x", "y"), "--bytes-rate")
		}
		_, err = backfill.ParseRate("--rate", "fast")
		assert.ErrorIs(t, err, backfill.ErrInvalidRate)
		r, err := backfill.ParseRate("--rate", "unlimited")
		require.NoError(t, err)
		assert.Equal(t, backfill.Unlimited, r)
	})
	t.Run("pause a backfill never started", func(t *testing.T) {
		e := newEnv(t, "")
		err := backfill.Pause(ctx, e.cat, e.migration, "x", "y")
		assert.ErrorIs(t, err, backfill.ErrNotStarted)
		assert.ErrorIs(t, backfill.Resume(ctx, e.cat, e.migration, "x", "y"), backfill.ErrNotStarted)
		assert.ErrorIs(t, backfill.SetRate(ctx, e.cat, e.migration, 5, "x", "y"), backfill.ErrNotStarted)
	})
	t.Run("config without a required field", func(t *testing.T) {
		e := newEnv(t, "")
		cfg := e.config()
		cfg.Reconverge = nil
		_, err := backfill.Run(ctx, cfg)
		assert.ErrorIs(t, err, backfill.ErrInvalidConfig)
	})
}
