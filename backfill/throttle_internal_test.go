package backfill

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tandemdb/tandem/adapters"
)

func TestAdapt(t *testing.T) {
	inf := math.Inf(1)
	for _, c := range []struct {
		name            string
		limit, achieved float64
		strained, wrote bool
		window          time.Duration
		want            float64
	}{
		{"healthy and unlimited stays unlimited", inf, 500, false, true, time.Second, inf},
		{"strain halves the throughput achieved", inf, 400, true, true, time.Second, 200},
		{"strain with nothing achieved halves the limit", 300, 0, true, false, time.Second, 150},
		{"strain with nothing known starts at 50", inf, 0, true, false, time.Second, 50},
		{"never below the floor", 1, 0, true, false, time.Second, adaptiveFloor},
		{"recovers by 10% a second", 200, 200, false, true, time.Second, 220},
		{"recovers by 10% a second, over half a second", 200, 200, false, true, 500 * time.Millisecond, 200 * math.Sqrt(1.1)},
		{"stops limiting far above the throughput", 5000, 100, false, true, time.Second, inf},
	} {
		t.Run(c.name, func(t *testing.T) {
			assert.InDelta(t, c.want, adapt(c.limit, c.achieved, c.strained, c.wrote, c.window), 1e-6)
		})
	}
}

// throttlingErr is what the AWS SDK returns for a throttled request (its ErrorCode).
type throttlingErr struct{ code string }

func (e throttlingErr) Error() string     { return "api error " + e.code }
func (e throttlingErr) ErrorCode() string { return e.code }

func TestIsThrottling(t *testing.T) {
	assert.True(t, isThrottling(throttlingErr{"ProvisionedThroughputExceededException"}))
	assert.True(t, isThrottling(throttlingErr{"ThrottlingException"}))
	assert.True(t, isThrottling(adapters.ErrRetriesExhausted))
	assert.False(t, isThrottling(throttlingErr{"ValidationException"}))
	assert.False(t, isThrottling(errors.New("connection refused")))
}

// TestThrottleWaitsWhilePaused checks the waiting side alone: a paused decision blocks wait
// until a resume wakes it, and a rate limits it.
func TestThrottleWaitsWhilePaused(t *testing.T) {
	cfg := &Config{}
	th := newThrottle(cfg, NewMetrics(nil).forMigration("m"))
	th.mu.Lock()
	th.paused = true
	th.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- th.wait(context.Background(), 10, 100) }()
	select {
	case <-done:
		t.Fatal("wait returned while paused")
	case <-time.After(200 * time.Millisecond):
	}
	th.mu.Lock()
	th.paused = false
	close(th.wake)
	th.wake = make(chan struct{})
	th.mu.Unlock()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Second):
		t.Fatal("resume did not wake the waiter")
	}

	setLimit(th.docs, 20) // 20 documents/s, burst 4
	start := time.Now()
	require.NoError(t, th.wait(context.Background(), 10, 0))
	require.NoError(t, th.wait(context.Background(), 10, 0))
	assert.InDelta(t, 0.8, time.Since(start).Seconds(), 0.3, "20 documents at 20/s, less the burst")
	assert.Equal(t, rate.Limit(20), th.docs.Limit())
}
