package flags_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
)

// saveVerify stores a verification summary as the verifier would.
func saveVerify(t *testing.T, c *catalog.Catalog, migration string, s flags.VerifySummary, at time.Time) {
	t.Helper()
	b, err := json.Marshal(s)
	require.NoError(t, err)
	_, err = c.SaveReport(context.Background(), catalog.Report{Migration: migration, Kind: flags.ReportKindVerify, Content: string(b), At: at})
	require.NoError(t, err)
}

// passGates leaves a migration with a fresh clean verification and a small fresh lag.
func passGates(t *testing.T, c *catalog.Catalog, migration string) {
	t.Helper()
	now := time.Now()
	saveVerify(t, c, migration, flags.VerifySummary{Keys: 1000, Clean: true, Started: now.Add(-2 * time.Minute), Finished: now.Add(-time.Minute)}, now)
	require.NoError(t, c.ReportLag(context.Background(), migration, flags.ComponentForward, 200*time.Millisecond))
	require.NoError(t, c.ReportLag(context.Background(), migration, flags.ComponentReverse, 300*time.Millisecond))
}

func TestCutoverGates(t *testing.T) {
	ctx := context.Background()
	base := time.Now()
	// One clock for the catalog (report and lag times) and the manager (ages).
	var offset atomic.Int64
	clock := func() time.Time { return base.Add(time.Duration(offset.Load())) }

	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, c *catalog.Catalog)
		check   func(ctx context.Context, migration string) error
		gate    string // the gate that must fail; "" when all pass
		detail  string
		advance time.Duration // clock moves this far before the cutover
	}{
		{name: "all pass", setup: passAll},
		{name: "no verification", gate: flags.GateVerification, detail: "no verification report", setup: func(t *testing.T, c *catalog.Catalog) {
			passLag(t, c)
		}},
		{name: "verification found mismatches", gate: flags.GateVerification, detail: "found 3 mismatches in 1000 keys", setup: func(t *testing.T, c *catalog.Catalog) {
			passLag(t, c)
			saveVerify(t, c, "users", flags.VerifySummary{Keys: 1000, Mismatches: 3, Started: clock().Add(-time.Minute), Finished: clock()}, clock())
		}},
		{name: "newest verification is dirty", gate: flags.GateVerification, detail: "found 1 mismatches", setup: func(t *testing.T, c *catalog.Catalog) {
			passLag(t, c)
			saveVerify(t, c, "users", flags.VerifySummary{Keys: 10, Clean: true, Finished: clock().Add(-time.Minute)}, clock().Add(-time.Minute))
			saveVerify(t, c, "users", flags.VerifySummary{Keys: 10, Mismatches: 1, Finished: clock()}, clock())
		}},
		{name: "verification unfinished", gate: flags.GateVerification, detail: "has not finished", setup: func(t *testing.T, c *catalog.Catalog) {
			passLag(t, c)
			saveVerify(t, c, "users", flags.VerifySummary{Keys: 10, Started: clock()}, clock())
		}},
		{name: "verification too old", gate: flags.GateVerification, detail: "finished 20m0s ago, limit 15m0s", setup: func(t *testing.T, c *catalog.Catalog) {
			saveVerify(t, c, "users", flags.VerifySummary{Keys: 10, Clean: true, Finished: clock().Add(-20 * time.Minute)}, clock().Add(-20*time.Minute))
			passLag(t, c)
		}},
		{name: "verification report unreadable", gate: flags.GateVerification, detail: "is not a verification summary", setup: func(t *testing.T, c *catalog.Catalog) {
			passLag(t, c)
			_, err := c.SaveReport(context.Background(), catalog.Report{Migration: "users", Kind: flags.ReportKindVerify, Content: "all good!", At: clock()})
			require.NoError(t, err)
		}},
		{name: "lag too large", gate: flags.GateChangeLag, detail: "change lag 7s (cdc-reverse on ", setup: func(t *testing.T, c *catalog.Catalog) {
			passVerify(t, c)
			require.NoError(t, c.ReportLag(context.Background(), "users", flags.ComponentForward, time.Second))
			require.NoError(t, c.ReportLag(context.Background(), "users", flags.ComponentReverse, 7*time.Second))
		}},
		{name: "no lag reported", gate: flags.GateChangeLag, detail: "no change-lag report in the last 30s (0 older records)", setup: passVerify},
		{name: "lag reports stale", gate: flags.GateChangeLag, detail: "no change-lag report in the last 30s (2 older records)", advance: time.Minute, setup: func(t *testing.T, c *catalog.Catalog) {
			passLag(t, c)
			// The verification finishes after the lag reports, "now" once the clock moved.
			saveVerify(t, c, "users", flags.VerifySummary{Keys: 10, Clean: true, Finished: clock().Add(time.Minute)}, clock())
		}},
		{name: "reverse dead letter", gate: flags.GateReversePath, detail: "1 reverse dead letters", setup: func(t *testing.T, c *catalog.Catalog) {
			passAll(t, c)
			require.NoError(t, c.AddDeadLetter(context.Background(), catalog.DeadLetter{Migration: "users", KeyString: `"u1"`, Key: "u1", Direction: "reverse", Step: "reverse[0]", Reason: "no inverse", SpecVersion: "v1"}))
			require.NoError(t, c.AddDeadLetter(context.Background(), catalog.DeadLetter{Migration: "users", KeyString: `"u2"`, Key: "u2", Direction: "forward", Step: "forward[0]", Reason: "x", SpecVersion: "v1"}))
		}},
		{name: "reverse check fails", gate: flags.GateReversePath, detail: "reverse check failed: reverse tailer not running",
			check: func(context.Context, string) error { return errors.New("reverse tailer not running") }, setup: passAll},
		{name: "reverse check passes", check: func(context.Context, string) error { return nil }, setup: passAll},
		{name: "the verifier's summary", setup: func(t *testing.T, c *catalog.Catalog) {
			passLag(t, c)
			require.NoError(t, c.SaveVerifySummary(context.Background(), "users", catalog.VerifySummary{
				Keys: 5, Clean: true, Started: clock().Add(-time.Minute), Finished: clock(), Rechecked: 2, Samples: []string{"x"},
			}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			offset.Store(0)
			c := newCatalog(t, catalog.WithClock(clock))
			register(t, c, "users")
			putPhase(t, c, "users", flags.PhaseDual)
			tc.setup(t, c)
			offset.Store(int64(tc.advance))
			opts := []flags.ManagerOption{flags.WithClock(clock)}
			if tc.check != nil {
				opts = append(opts, flags.WithReverseCheck(tc.check))
			}
			mgr := flags.NewManager(c, opts...)
			before := readState(t, c, "users")

			checked, err := mgr.CheckGates(ctx, "users")
			require.NoError(t, err)
			v, results, err := mgr.Cutover(ctx, "users", "carol", "go")
			require.Len(t, results, 3)
			assert.Equal(t, checked, results, "CheckGates and Cutover see the same")
			for i, g := range []string{flags.GateVerification, flags.GateChangeLag, flags.GateReversePath} {
				r := results[i]
				assert.Equal(t, g, r.Gate)
				assert.NotEmpty(t, r.Detail)
				if g == tc.gate {
					assert.False(t, r.OK, "gate %s", g)
					assert.Contains(t, r.Detail, tc.detail)
				} else {
					assert.True(t, r.OK, "gate %s: %s", g, r.Detail)
				}
				t.Logf("%s ok=%v: %s", r.Gate, r.OK, r.Detail)
			}
			if tc.gate != "" {
				require.ErrorIs(t, err, flags.ErrGateFailed)
				assert.Contains(t, err.Error(), tc.gate+" (")
				assert.Equal(t, flags.PhaseDual, v.Phase)
				after := readState(t, c, "users")
				assert.Equal(t, before.m, after.m)
				assert.Equal(t, before.audit, after.audit)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, flags.PhaseCutover, v.Phase)
			assert.Equal(t, flags.ReadNew, v.ReadSource)
		})
	}

	t.Run("limits", func(t *testing.T) {
		offset.Store(0)
		c := newCatalog(t, catalog.WithClock(clock))
		register(t, c, "users")
		putPhase(t, c, "users", flags.PhaseDual)
		saveVerify(t, c, "users", flags.VerifySummary{Keys: 10, Clean: true, Finished: clock().Add(-time.Minute)}, clock())
		require.NoError(t, c.ReportLag(ctx, "users", flags.ComponentForward, 2*time.Second))
		mgr := flags.NewManager(c, flags.WithClock(clock), flags.WithGates(flags.GateConfig{MaxLag: time.Second, VerifyMaxAge: 30 * time.Second}))
		results, err := mgr.CheckGates(ctx, "users")
		require.NoError(t, err)
		assert.Contains(t, results[0].Detail, "finished 1m0s ago, limit 30s")
		assert.Contains(t, results[1].Detail, "change lag 2s (cdc-forward on ")
		assert.Contains(t, results[1].Detail, "> limit 1s")
	})
}

func passVerify(t *testing.T, c *catalog.Catalog) {
	now := time.Now()
	saveVerify(t, c, "users", flags.VerifySummary{Keys: 1000, Clean: true, Started: now.Add(-2 * time.Minute), Finished: now.Add(-time.Minute)}, now)
}

func passLag(t *testing.T, c *catalog.Catalog) {
	require.NoError(t, c.ReportLag(context.Background(), "users", flags.ComponentForward, 200*time.Millisecond))
	require.NoError(t, c.ReportLag(context.Background(), "users", flags.ComponentReverse, 300*time.Millisecond))
}

func passAll(t *testing.T, c *catalog.Catalog) {
	passVerify(t, c)
	passLag(t, c)
}
