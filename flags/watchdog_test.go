package flags_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/flags"
)

// fakeClock is a settable time source for the watchdog's window.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func feed(w *flags.Watchdog, reads, mismatches int) {
	for i := 0; i < reads; i++ {
		w.ShadowRead(i < mismatches)
	}
}

func TestWatchdog(t *testing.T) {
	ctx := context.Background()
	c := newCatalog(t)
	mgr := flags.NewManager(c)
	setup := func(t *testing.T, migration, phase string) (*flags.Watchdog, *fakeClock) {
		t.Helper()
		register(t, c, migration)
		putPhase(t, c, migration, phase)
		clk := newFakeClock()
		w, err := flags.NewWatchdog(mgr, flags.WatchdogConfig{Migration: migration, Now: clk.now})
		require.NoError(t, err)
		return w, clk
	}

	t.Run("mismatch rate in cutover", func(t *testing.T) {
		w, _ := setup(t, "m1", flags.PhaseCutover)
		feed(w, 100, 12)
		acted, err := w.Check(ctx)
		require.NoError(t, err)
		assert.True(t, acted)
		v, err := mgr.Get(ctx, "m1")
		require.NoError(t, err)
		assert.Equal(t, flags.PhaseDual, v.Phase)
		assert.Equal(t, flags.ReadOld, v.ReadSource)
		hist, err := mgr.History(ctx, "m1", 1)
		require.NoError(t, err)
		assert.True(t, strings.HasPrefix(hist[0].Who, "tandem watchdog "), hist[0].Who)
		assert.Equal(t, "shadow-read mismatch rate 12.0% > 5.0% over 1m0s (100 reads)", hist[0].Why)
		t.Logf("audit: who=%q why=%q", hist[0].Who, hist[0].Why)

		acted, err = w.Check(ctx)
		require.NoError(t, err)
		assert.False(t, acted, "the window starts afresh after acting")
	})

	t.Run("error rate in dual", func(t *testing.T) {
		w, _ := setup(t, "m2", flags.PhaseDual)
		for i := 0; i < 60; i++ {
			w.NewStoreOp(i%10 == 0)
		}
		feed(w, 100, 0)
		acted, err := w.Check(ctx)
		require.NoError(t, err)
		assert.True(t, acted)
		hist, err := mgr.History(ctx, "m2", 1)
		require.NoError(t, err)
		assert.Equal(t, "new-store error rate 10.0% > 5.0% over 1m0s (60 operations)", hist[0].Why)
		assert.Equal(t, "shadow", hist[0].Changes[0].To)
	})

	t.Run("below min samples", func(t *testing.T) {
		w, _ := setup(t, "m3", flags.PhaseCutover)
		before := readState(t, c, "m3")
		feed(w, 49, 49)
		for i := 0; i < 49; i++ {
			w.NewStoreOp(true)
		}
		acted, err := w.Check(ctx)
		require.NoError(t, err)
		assert.False(t, acted, "49 samples are not enough")
		assert.Equal(t, before, readState(t, c, "m3"))
		feed(w, 1, 1)
		acted, err = w.Check(ctx)
		require.NoError(t, err)
		assert.True(t, acted, "50 are")
	})

	t.Run("at the limit", func(t *testing.T) {
		w, _ := setup(t, "m4", flags.PhaseCutover)
		before := readState(t, c, "m4")
		feed(w, 100, 5)
		acted, err := w.Check(ctx)
		require.NoError(t, err)
		assert.False(t, acted, "5% is not more than 5%")
		assert.Equal(t, before, readState(t, c, "m4"))
	})

	t.Run("shadow phase", func(t *testing.T) {
		w, _ := setup(t, "m5", flags.PhaseShadow)
		before := readState(t, c, "m5")
		feed(w, 200, 200)
		acted, err := w.Check(ctx)
		require.NoError(t, err)
		assert.False(t, acted, "no action in shadow")
		assert.Equal(t, before, readState(t, c, "m5"))
		_, err = mgr.Advance(ctx, "m5", flags.PhaseDual, "a", "b")
		require.NoError(t, err)
		acted, err = w.Check(ctx)
		require.NoError(t, err)
		assert.False(t, acted, "samples taken in shadow do not count in dual")
	})

	t.Run("off and finalized", func(t *testing.T) {
		for _, phase := range []string{flags.PhaseOff, flags.PhaseFinalized} {
			w, _ := setup(t, "m6-"+phase, phase)
			feed(w, 200, 200)
			acted, err := w.Check(ctx)
			require.NoError(t, err)
			assert.False(t, acted, phase)
		}
	})

	t.Run("old samples leave the window", func(t *testing.T) {
		w, clk := setup(t, "m7", flags.PhaseCutover)
		feed(w, 100, 100)
		clk.advance(2 * time.Minute)
		acted, err := w.Check(ctx)
		require.NoError(t, err)
		assert.False(t, acted)
		// Spread over the window: 30 now, 30 half a window later: 60 samples in one window.
		feed(w, 30, 30)
		clk.advance(30 * time.Second)
		acted, err = w.Check(ctx)
		require.NoError(t, err)
		assert.False(t, acted, "30 samples")
		feed(w, 30, 30)
		acted, err = w.Check(ctx)
		require.NoError(t, err)
		assert.True(t, acted, "60 samples within the window")
	})

	t.Run("run with concurrent callers", func(t *testing.T) {
		register(t, c, "m8")
		putPhase(t, c, "m8", flags.PhaseCutover)
		w, err := flags.NewWatchdog(mgr, flags.WatchdogConfig{Migration: "m8", CheckInterval: 10 * time.Millisecond})
		require.NoError(t, err)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); w.Run(rctx) }()
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 100; i++ {
					w.ShadowRead(i%4 == 0)
					w.NewStoreOp(false)
				}
			}()
		}
		wg.Wait()
		waitFor(t, 10*time.Second, "the watchdog rolls back", func() bool {
			v, err := mgr.Get(ctx, "m8")
			return err == nil && v.Phase == flags.PhaseDual
		})
		cancel()
		<-done
		hist, err := mgr.History(ctx, "m8", 1)
		require.NoError(t, err)
		assert.Contains(t, hist[0].Why, "shadow-read mismatch rate 25.0% > 5.0% over 1m0s")
	})

	t.Run("config", func(t *testing.T) {
		for _, tc := range []struct {
			cfg flags.WatchdogConfig
			msg string
		}{
			{flags.WatchdogConfig{}, "no migration given"},
			{flags.WatchdogConfig{Migration: "m", MismatchRate: 5}, "mismatch rate 5: want a share from 0 to 1"},
			{flags.WatchdogConfig{Migration: "m", ErrorRate: 1.5}, "error rate 1.5"},
			{flags.WatchdogConfig{Migration: "m", MinSamples: -1}, "min samples -1"},
			{flags.WatchdogConfig{Migration: "m", Window: time.Millisecond}, "window 1ms"},
			{flags.WatchdogConfig{Migration: "m", CheckInterval: -time.Second}, "check interval -1s"},
		} {
			_, err := flags.NewWatchdog(mgr, tc.cfg)
			assert.ErrorContains(t, err, tc.msg)
		}
		_, err := flags.NewWatchdog(nil, flags.WatchdogConfig{Migration: "m"})
		assert.ErrorContains(t, err, "nil manager")
	})
}
