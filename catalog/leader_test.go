package catalog_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/catalog"
)

// TestLeaderLeaseLifecycle walks one lease through its states: the first claim, a live holder
// refusing others, renewal, release and the successor that needs no wait, and the released
// generation's stale holder fenced.
func TestLeaderLeaseLifecycle(t *testing.T) {
	ctx := context.Background()
	c, _ := open(t)
	const ttl, skew = time.Minute, time.Second

	_, err := c.LeaderLease(ctx, "m/cdc-forward")
	require.ErrorIs(t, err, catalog.ErrNotFound)

	a, err := c.AcquireLeaderLease(ctx, "m/cdc-forward", "a", ttl, skew)
	require.NoError(t, err)
	assert.Equal(t, int64(1), a.Lease.Generation)
	assert.Equal(t, "a", a.Lease.Owner)
	assert.True(t, a.NotBefore.IsZero(), "a first generation waits for no one")
	assert.False(t, a.Lease.TookOver)

	_, err = c.AcquireLeaderLease(ctx, "m/cdc-forward", "b", ttl, skew)
	require.ErrorIs(t, err, catalog.ErrLeaseHeld)
	assert.ErrorContains(t, err, "held by a")

	renewed, err := c.RenewLeaderLease(ctx, a.Lease, ttl)
	require.NoError(t, err)
	assert.False(t, renewed.ExpiresAt.Before(a.Lease.ExpiresAt))
	got, err := c.LeaderLease(ctx, "m/cdc-forward")
	require.NoError(t, err)
	assert.True(t, got.ExpiresAt.Equal(renewed.ExpiresAt), "the renewal is stored")

	require.NoError(t, c.ReleaseLeaderLease(ctx, renewed))
	b, err := c.AcquireLeaderLease(ctx, "m/cdc-forward", "b", ttl, skew)
	require.NoError(t, err)
	assert.Equal(t, int64(2), b.Lease.Generation)
	assert.Equal(t, "a", b.Lease.Predecessor)
	assert.False(t, b.Lease.TookOver, "a released lease is handed over, not taken over")
	assert.True(t, b.NotBefore.IsZero(), "a released predecessor has stopped: no wait")

	_, err = c.RenewLeaderLease(ctx, renewed, ttl)
	require.ErrorIs(t, err, catalog.ErrLeaseLost, "the old generation's holder is fenced")
	assert.ErrorContains(t, err, "taken over by b")

	_, err = c.AcquireLeaderLease(ctx, "other", "a", ttl, skew)
	require.NoError(t, err, "leases of other names are independent")
}

// TestLeaderLeaseTakeover takes over an expired lease: through a catalog whose clock runs
// ahead (as a process whose clock is off by more than the skew allowed would). The successor
// must wait for the predecessor's last recorded expiry, the predecessor's next renewal is
// fenced, and old generations are pruned.
func TestLeaderLeaseTakeover(t *testing.T) {
	ctx := context.Background()
	c, db := open(t)
	const ttl, skew = 10 * time.Second, 500 * time.Millisecond
	ahead := openWithClock(t, db, func() time.Time { return time.Now().Add(ttl + 2*skew) })

	a, err := c.AcquireLeaderLease(ctx, "m/cdc-reverse", "a", ttl, skew)
	require.NoError(t, err)
	last, err := c.RenewLeaderLease(ctx, a.Lease, ttl)
	require.NoError(t, err)

	b, err := ahead.AcquireLeaderLease(ctx, "m/cdc-reverse", "b", ttl, skew)
	require.NoError(t, err)
	assert.Equal(t, int64(2), b.Lease.Generation)
	assert.True(t, b.Lease.TookOver)
	assert.Equal(t, "a", b.Lease.Predecessor)
	assert.True(t, b.NotBefore.Equal(last.ExpiresAt.Add(skew)), "the successor waits for the predecessor's last promise plus the skew: %s vs %s", b.NotBefore, last.ExpiresAt)

	_, err = c.RenewLeaderLease(ctx, last, ttl)
	require.ErrorIs(t, err, catalog.ErrLeaseLost)

	// More generations: each claim keeps its predecessor and prunes what is older.
	prev := b.Lease
	for range 3 {
		require.NoError(t, ahead.ReleaseLeaderLease(ctx, prev))
		next, err := ahead.AcquireLeaderLease(ctx, "m/cdc-reverse", "b", ttl, skew)
		require.NoError(t, err)
		prev = next.Lease
	}
	all, err := c.LeaderLeases(ctx, "m/cdc-reverse")
	require.NoError(t, err)
	require.Len(t, all, 2)
	assert.Equal(t, []int64{4, 5}, []int64{all[0].Generation, all[1].Generation})

	_, err = c.RenewLeaderLease(ctx, a.Lease, ttl)
	require.ErrorIs(t, err, catalog.ErrLeaseLost, "a pruned generation's holder is fenced too")
}

// TestLeaderLeaseTakeoverSeesARacingRenewal has the holder renew between the successor's read
// of its record (which found it expired) and the successor's claim: the successor must wait for
// that renewal's expiry, not the one it read, and the holder's next renewal is fenced. The
// renewal is made from inside the successor's clock, which AcquireLeaderLease reads between the
// two steps.
func TestLeaderLeaseTakeoverSeesARacingRenewal(t *testing.T) {
	ctx := context.Background()
	c, db := open(t)
	const ttl, skew = 10 * time.Second, 500 * time.Millisecond
	a, err := c.AcquireLeaderLease(ctx, "m/race-renew", "a", ttl, skew)
	require.NoError(t, err)
	var renewed catalog.LeaderLease
	var once sync.Once
	ahead := openWithClock(t, db, func() time.Time {
		once.Do(func() {
			time.Sleep(5 * time.Millisecond) // the renewal's expiry is later than the one read
			renewed, err = c.RenewLeaderLease(ctx, a.Lease, ttl)
		})
		return time.Now().Add(ttl + 2*skew)
	})
	b, berr := ahead.AcquireLeaderLease(ctx, "m/race-renew", "b", ttl, skew)
	require.NoError(t, err, "the racing renewal, made before the claim")
	require.NoError(t, berr)
	require.True(t, renewed.ExpiresAt.After(a.Lease.ExpiresAt))
	assert.True(t, b.NotBefore.Equal(renewed.ExpiresAt.Add(skew)),
		"the successor waits for the racing renewal's expiry %s plus the skew, not the expiry it read %s: %s",
		renewed.ExpiresAt, a.Lease.ExpiresAt, b.NotBefore)
	_, err = c.RenewLeaderLease(ctx, renewed, ttl)
	require.ErrorIs(t, err, catalog.ErrLeaseLost)
}

// TestLeaderLeaseOneWinner races contenders for one generation: exactly one wins, the others
// are told the lease is held or was claimed first.
func TestLeaderLeaseOneWinner(t *testing.T) {
	ctx := context.Background()
	c, db := open(t)
	const n = 6
	cats := make([]*catalog.Catalog, n)
	for i := range cats {
		cats[i] = openWithClock(t, db, time.Now)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = cats[i].AcquireLeaderLease(ctx, "m/race", string(rune('a'+i)), time.Minute, 0)
		}()
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, catalog.ErrLeaseHeld), errors.Is(err, catalog.ErrConflict):
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	assert.Equal(t, 1, won)
	all, err := c.LeaderLeases(ctx, "m/race")
	require.NoError(t, err)
	require.Len(t, all, 1)
	assert.Equal(t, int64(1), all[0].Generation)
}

func TestLeaderLeaseRefusesBadArguments(t *testing.T) {
	ctx := context.Background()
	c, _ := open(t)
	for _, tc := range []struct {
		name, lease, owner string
		ttl, skew          time.Duration
		want               string
	}{
		{"empty name", "", "a", time.Second, 0, "empty name"},
		{"hash in name", "m#1", "a", time.Second, 0, "may not contain '#'"},
		{"empty owner", "m", "", time.Second, 0, "empty owner"},
		{"zero ttl", "m", "a", 0, 0, "must be positive"},
		{"negative skew", "m", "a", time.Second, -time.Second, "negative clock skew"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.AcquireLeaderLease(ctx, tc.lease, tc.owner, tc.ttl, tc.skew)
			require.ErrorContains(t, err, tc.want)
		})
	}
	_, err := c.RenewLeaderLease(ctx, catalog.LeaderLease{Name: "m", Owner: "a", Generation: 1}, time.Second)
	require.ErrorIs(t, err, catalog.ErrLeaseLost, "renewing a lease never acquired")
}

// openWithClock opens the catalog in database db with a clock of its own.
func openWithClock(t *testing.T, db string, now func() time.Time) *catalog.Catalog {
	t.Helper()
	c, err := catalog.Open(context.Background(), client, catalog.WithDatabase(db), catalog.WithClock(now))
	require.NoError(t, err)
	return c
}
