package migration_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/migration"
)

// fakePath is a path double (our own interface, no server behind it): each run fails until
// failures runs have failed, then runs until its context ends, or returns nil at once when
// finish is set. It counts its runs and how many are executing.
type fakePath struct {
	name     string
	failures int32
	finish   bool

	runs    atomic.Int32
	running atomic.Int32
	started chan struct{} // one send per run that did not fail, when it has begun (buffered)
}

func newFakePath(name string, failures int32) *fakePath {
	return &fakePath{name: name, failures: failures, started: make(chan struct{}, 64)}
}

func (p *fakePath) Name() string { return p.name }

func (p *fakePath) Run(ctx context.Context) error {
	n := p.runs.Add(1)
	if n <= p.failures {
		return fmt.Errorf("%s: failure %d", p.name, n)
	}
	if p.finish {
		return nil
	}
	p.running.Add(1)
	defer p.running.Add(-1)
	p.started <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

func waitStarted(t *testing.T, p *fakePath) {
	t.Helper()
	select {
	case <-p.started:
	case <-time.After(10 * time.Second):
		t.Fatalf("path %s did not start", p.name)
	}
}

// TestSupervisorRetriesWithBackoff: a path that fails three times is run again after growing
// delays; the supervisor records its restarts and last error, and Stop cancels and waits.
func TestSupervisorRetriesWithBackoff(t *testing.T) {
	p := newFakePath("flaky", 3)
	s := migration.NewSupervisor(p, migration.Backoff{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond}, nil)
	assert.Equal(t, migration.StateStopped, s.Status().State)

	var mu sync.Mutex
	var delays []time.Duration
	stopWatch := make(chan struct{})
	watched := make(chan struct{})
	go func() { // record each backoff as the supervisor announces it
		defer close(watched)
		var last time.Time
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(time.Millisecond):
			}
			st := s.Status()
			if st.State == migration.StateBackingOff && !st.Since.Equal(last) {
				last = st.Since
				mu.Lock()
				delays = append(delays, st.RetryAt.Sub(st.Since))
				mu.Unlock()
			}
		}
	}()

	start := time.Now()
	s.Start(context.Background())
	waitStarted(t, p)
	elapsed := time.Since(start)
	close(stopWatch)
	<-watched

	st := s.Status()
	assert.Equal(t, migration.StateRunning, st.State)
	assert.Equal(t, 3, st.Restarts)
	assert.Equal(t, "flaky: failure 3", st.LastError)
	assert.False(t, st.LastErrorAt.IsZero())
	assert.True(t, st.RetryAt.IsZero(), "a running path has no retry time")
	assert.GreaterOrEqual(t, elapsed, (20+40+50)*time.Millisecond, "waits of 20ms, 40ms, then the 50ms cap")
	mu.Lock()
	assert.Equal(t, []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 50 * time.Millisecond}, delays)
	mu.Unlock()

	s.Stop()
	assert.Equal(t, int32(0), p.running.Load(), "Stop waits until Run has returned")
	st = s.Status()
	assert.Equal(t, migration.StateStopped, st.State)
	assert.Equal(t, "flaky: failure 3", st.LastError, "the last error is kept")
	s.Stop() // a second Stop does nothing

	// Started again, the record carries on.
	s.Start(context.Background())
	waitStarted(t, p)
	s.Start(context.Background()) // already started: nothing happens
	assert.Equal(t, int32(5), p.runs.Load())
	s.Stop()
	assert.Equal(t, 3, s.Status().Restarts)
}

// TestSupervisorStopsWhileBackingOff: a path that keeps failing is stopped during its wait,
// and the context given to Start ends the supervision too.
func TestSupervisorStopsWhileBackingOff(t *testing.T) {
	p := newFakePath("broken", 1<<30)
	s := migration.NewSupervisor(p, migration.Backoff{Initial: time.Hour}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	s.Start(ctx)
	require.Eventually(t, func() bool { return s.Status().State == migration.StateBackingOff }, 5*time.Second, time.Millisecond)
	st := s.Status()
	assert.Equal(t, "broken: failure 1", st.LastError)
	assert.WithinDuration(t, st.Since.Add(time.Hour), st.RetryAt, time.Millisecond)
	cancel()
	require.Eventually(t, func() bool { return s.Status().State == migration.StateStopped }, 5*time.Second, time.Millisecond)
	s.Stop()
	assert.Equal(t, int32(1), p.runs.Load())
}

// TestSupervisorDonePathIsNotRestarted: a path that returns nil has done its work: it is not
// run again while the supervisor stays started, only after a Stop and a Start.
func TestSupervisorDonePathIsNotRestarted(t *testing.T) {
	p := newFakePath("once", 0)
	p.finish = true
	s := migration.NewSupervisor(p, migration.Backoff{Initial: time.Millisecond}, nil)
	s.Start(context.Background())
	require.Eventually(t, func() bool { return s.Status().State == migration.StateDone }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, int32(1), p.runs.Load())
	s.Start(context.Background())
	assert.Equal(t, int32(1), p.runs.Load(), "still started: a done path stays done")
	s.Stop()
	s.Start(context.Background())
	require.Eventually(t, func() bool { return p.runs.Load() == 2 }, 5*time.Second, time.Millisecond)
	s.Stop()
	assert.Equal(t, 0, s.Status().Restarts)
	assert.Empty(t, s.Status().LastError)
}
