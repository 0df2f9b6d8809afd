package cdc_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
)

// The elections of these tests run against the binary's FerretDB, each in a catalog database
// of its own. Every contender opens its own *catalog.Catalog, as a process of its own would.

var electSeq atomic.Int64

// leaseDB names a new catalog database and drops it when the test ends.
func leaseDB(t *testing.T) string {
	t.Helper()
	db := fmt.Sprintf("cdc_lease_test_%d", electSeq.Add(1))
	t.Cleanup(func() { _ = client.Database(db).Drop(context.Background()) })
	return db
}

func openLeases(t *testing.T, db string, opts ...catalog.Option) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Open(context.Background(), client, append([]catalog.Option{catalog.WithDatabase(db)}, opts...)...)
	require.NoError(t, err)
	return c
}

// timeline records what the contenders' work did, in the order it happened, and whether two
// ever worked at once.
type timeline struct {
	mu      sync.Mutex
	events  []string
	working map[string]bool
	overlap []string
}

func newTimeline() *timeline { return &timeline{working: map[string]bool{}} }

func (tl *timeline) add(ev string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.events = append(tl.events, ev)
}

func (tl *timeline) start(who string, gen int64) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for other := range tl.working {
		tl.overlap = append(tl.overlap, fmt.Sprintf("%s started generation %d while %s worked", who, gen, other))
	}
	tl.working[who] = true
	tl.events = append(tl.events, fmt.Sprintf("start %s %d", who, gen))
}

func (tl *timeline) stop(who string, cause error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	delete(tl.working, who)
	tl.events = append(tl.events, fmt.Sprintf("stop %s: %v", who, cause))
}

func (tl *timeline) snapshot() ([]string, []string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return append([]string(nil), tl.events...), append([]string(nil), tl.overlap...)
}

func (tl *timeline) index(ev string) int {
	evs, _ := tl.snapshot()
	for i, e := range evs {
		if e == ev {
			return i
		}
	}
	return -1
}

// contender is one Elect call running in the background.
type contender struct {
	name  string
	reg   *prometheus.Registry
	done  chan struct{} // closed when Elect has returned, with err
	err   error
	stop  context.CancelFunc
	cause atomic.Value // the cause of the last work context that ended
}

// contend starts Elect for who; work runs as fn after recording its start, and its context's
// end is recorded with the cause.
func contend(t *testing.T, tl *timeline, who string, cfg cdc.ElectConfig, work func(ctx context.Context) error) *contender {
	t.Helper()
	c := &contender{name: who, reg: prometheus.NewRegistry(), done: make(chan struct{})}
	cfg.Owner = who
	cfg.Metrics = cdc.NewLeaderMetrics(c.reg)
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil)).With("contender", who)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	go func() {
		defer close(c.done)
		c.err = cdc.Elect(ctx, cfg, func(ctx context.Context, l catalog.LeaderLease) error {
			tl.start(who, l.Generation)
			err := work(ctx)
			cause := context.Cause(ctx)
			if ctx.Err() == nil {
				cause = nil
			}
			c.cause.Store(fmt.Sprint(cause))
			tl.stop(who, cause)
			return err
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(waitLimit):
			t.Errorf("Elect of %s did not return after its context ended", who)
		}
	})
	return c
}

func (c *contender) metric(t *testing.T, name string, labels map[string]string) float64 {
	return (&fixture{reg: c.reg}).metric(t, name, labels)
}

// untilCancelled is work that runs until its context ends.
func untilCancelled(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// TestElectOneLeads runs two contenders for one lease for a while: the work never runs twice at
// once, one of them leads, and the catalog names it.
func TestElectOneLeads(t *testing.T) {
	db := leaseDB(t)
	tl := newTimeline()
	cfg := cdc.ElectConfig{Name: "m/cdc-forward", TTL: 3 * time.Second, RenewEvery: 300 * time.Millisecond,
		ClockSkew: 50 * time.Millisecond, RetryEvery: 100 * time.Millisecond}
	cfgA, cfgB := cfg, cfg
	cfgA.Leases, cfgB.Leases = openLeases(t, db), openLeases(t, db)
	a := contend(t, tl, "a", cfgA, untilCancelled)
	b := contend(t, tl, "b", cfgB, untilCancelled)
	eventually(t, "a leader", func() bool { return tl.index("start a 1") >= 0 || tl.index("start b 1") >= 0 })
	// Let several renewals and retries pass.
	time.Sleep(5 * cfg.RenewEvery)
	events, overlap := tl.snapshot()
	assert.Empty(t, overlap, "the work ran twice at once: %v", events)
	lead, err := cfgA.Leases.(*catalog.Catalog).LeaderLease(context.Background(), cfg.Name)
	require.NoError(t, err)
	tl.mu.Lock()
	working := tl.working[lead.Owner]
	tl.mu.Unlock()
	assert.True(t, working, "the newest generation's owner %s is the one working: %v", lead.Owner, events)
	leading := a.metric(t, "tandem_leader_leading", nil) + b.metric(t, "tandem_leader_leading", nil)
	assert.Equal(t, 1.0, leading, "exactly one contender reports that it leads")
}

// TestElectReleaseHandsOver ends the leader's work: it releases the lease, and the other
// contender takes the next generation at once: with a TTL far longer than the test may wait, it
// could not have got it by expiry.
func TestElectReleaseHandsOver(t *testing.T) {
	db := leaseDB(t)
	tl := newTimeline()
	cfg := cdc.ElectConfig{Name: "m/cdc-forward", TTL: 10 * time.Minute, RenewEvery: time.Second, RetryEvery: 100 * time.Millisecond}
	cfgA, cfgB := cfg, cfg
	cfgA.Leases, cfgB.Leases = openLeases(t, db), openLeases(t, db)
	finish := make(chan struct{})
	a := contend(t, tl, "a", cfgA, func(ctx context.Context) error {
		select {
		case <-finish:
		case <-ctx.Done():
		}
		return nil
	})
	eventually(t, "a leading", func() bool { return tl.index("start a 1") >= 0 })
	b := contend(t, tl, "b", cfgB, untilCancelled)
	close(finish)
	select {
	case <-a.done:
		require.NoError(t, a.err, "Elect returns nil when the work is done")
	case <-time.After(waitLimit):
		t.Fatal("Elect of a did not return when its work did")
	}
	eventually(t, "b leading", func() bool { return tl.index("start b 2") >= 0 })
	assert.Greater(t, tl.index("start b 2"), tl.index("stop a: <nil>"))
	l, err := cfgB.Leases.(*catalog.Catalog).LeaderLease(context.Background(), cfg.Name)
	require.NoError(t, err)
	assert.Equal(t, "a", l.Predecessor)
	assert.False(t, l.TookOver)
	assert.Equal(t, 0.0, b.metric(t, "tandem_leader_takeovers_total", nil), "a hand-over is no takeover")
	assert.Equal(t, 1.0, b.metric(t, "tandem_leader_leading", nil))
}

// outage is the real catalog behind a switch that makes every lease call fail, as a catalog
// that cannot be reached would (a fault injector, not a fake: the calls it lets through reach
// FerretDB).
type outage struct {
	*catalog.Catalog
	down atomic.Bool
}

var errOutage = errors.New("catalog unreachable (injected)")

func (o *outage) RenewLeaderLease(ctx context.Context, l catalog.LeaderLease, ttl time.Duration) (catalog.LeaderLease, error) {
	if o.down.Load() {
		return l, errOutage
	}
	return o.Catalog.RenewLeaderLease(ctx, l, ttl)
}

func (o *outage) AcquireLeaderLease(ctx context.Context, name, owner string, ttl, skew time.Duration) (catalog.LeaderClaim, error) {
	if o.down.Load() {
		return catalog.LeaderClaim{}, errOutage
	}
	return o.Catalog.AcquireLeaderLease(ctx, name, owner, ttl, skew)
}

func (o *outage) ReleaseLeaderLease(ctx context.Context, l catalog.LeaderLease) error {
	if o.down.Load() {
		return errOutage
	}
	return o.Catalog.ReleaseLeaderLease(ctx, l)
}

// TestElectExpiryHandsOver cuts the leader off from the catalog: its work stops when its lease
// runs out (cause ErrLeaseExpired), and then, not before, the other contender takes over.
func TestElectExpiryHandsOver(t *testing.T) {
	db := leaseDB(t)
	tl := newTimeline()
	cfg := cdc.ElectConfig{Name: "m/cdc-reverse", TTL: 1500 * time.Millisecond, RenewEvery: 300 * time.Millisecond,
		ClockSkew: 100 * time.Millisecond, RetryEvery: 100 * time.Millisecond}
	cfgA, cfgB := cfg, cfg
	cut := &outage{Catalog: openLeases(t, db)}
	cfgA.Leases, cfgB.Leases = cut, openLeases(t, db)
	a := contend(t, tl, "a", cfgA, untilCancelled)
	eventually(t, "a leading", func() bool { return tl.index("start a 1") >= 0 })
	b := contend(t, tl, "b", cfgB, untilCancelled)
	cut.down.Store(true)
	eventually(t, "b leading", func() bool { return tl.index("start b 2") >= 0 })
	events, overlap := tl.snapshot()
	assert.Empty(t, overlap, "%v", events)
	stopA := tl.index("stop a: " + cdc.ErrLeaseExpired.Error())
	require.GreaterOrEqual(t, stopA, 0, "a's work ended because its lease expired: %v", events)
	assert.Greater(t, tl.index("start b 2"), stopA)
	assert.Equal(t, 1.0, b.metric(t, "tandem_leader_takeovers_total", nil))
	assert.Equal(t, 1.0, a.metric(t, "tandem_leader_losses_total", map[string]string{"reason": "expired"}))
	assert.Equal(t, 0.0, a.metric(t, "tandem_leader_leading", nil))
	assert.Positive(t, a.metric(t, "tandem_leader_renew_failures_total", nil))
}

// TestElectFencesStaleLeader has a contender whose clock runs a minute ahead, beyond any skew
// allowed, take the lease from a live leader. The leader's next renewal finds the newer
// generation and its work's context ends at once (cause ErrLeaseLost); the usurper still waits
// for the leader's recorded expiry before it starts.
func TestElectFencesStaleLeader(t *testing.T) {
	db := leaseDB(t)
	tl := newTimeline()
	cfg := cdc.ElectConfig{Name: "m/cdc-forward", TTL: 3 * time.Second, RenewEvery: 200 * time.Millisecond,
		ClockSkew: 10 * time.Millisecond, RetryEvery: 100 * time.Millisecond}
	cfgA, cfgB := cfg, cfg
	cfgA.Leases = openLeases(t, db)
	cfgB.Leases = openLeases(t, db, catalog.WithClock(func() time.Time { return time.Now().Add(time.Minute) }))
	a := contend(t, tl, "a", cfgA, untilCancelled)
	eventually(t, "a leading", func() bool { return tl.index("start a 1") >= 0 })
	b := contend(t, tl, "b", cfgB, untilCancelled)
	eventually(t, "a fenced", func() bool {
		return a.metric(t, "tandem_leader_losses_total", map[string]string{"reason": "fenced"}) == 1
	})
	cause, _ := a.cause.Load().(string)
	assert.Contains(t, cause, catalog.ErrLeaseLost.Error())
	assert.Contains(t, cause, "taken over by b")
	eventually(t, "b leading", func() bool { return tl.index("start b 2") >= 0 })
	events, overlap := tl.snapshot()
	assert.Empty(t, overlap, "%v", events)
	assert.Greater(t, tl.index("start b 2"), tl.index("stop a: "+cause))
	assert.Equal(t, 1.0, b.metric(t, "tandem_leader_takeovers_total", nil))
}

func TestElectChecksItsConfig(t *testing.T) {
	c := openLeases(t, leaseDB(t))
	noop := func(context.Context, catalog.LeaderLease) error { return nil }
	for _, tc := range []struct {
		name string
		cfg  cdc.ElectConfig
		want string
	}{
		{"no catalog", cdc.ElectConfig{Name: "m"}, "Leases is required"},
		{"no name", cdc.ElectConfig{Leases: c}, "Name is required"},
		{"renew not below ttl", cdc.ElectConfig{Leases: c, Name: "m", TTL: time.Second, RenewEvery: time.Second}, "less than the TTL"},
		{"negative ttl", cdc.ElectConfig{Leases: c, Name: "m", TTL: -time.Second}, "negative TTL"},
		{"negative skew", cdc.ElectConfig{Leases: c, Name: "m", ClockSkew: -time.Second}, "negative ClockSkew"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorContains(t, cdc.Elect(context.Background(), tc.cfg, noop), tc.want)
		})
	}
	err := cdc.Elect(context.Background(), cdc.ElectConfig{Leases: c, Name: "m#1", TTL: time.Second}, noop)
	require.ErrorContains(t, err, "may not contain '#'", "a name the catalog refuses fails Elect, not a retry loop")
}
