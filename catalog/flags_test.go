package catalog_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/catalog"
)

func TestSetFlagsChangesSeveralFlagsUnderOneRevision(t *testing.T) {
	c, _ := open(t)
	ctx := context.Background()
	_, err := c.RegisterSpec(ctx, "users", "v1", "x", "t")
	require.NoError(t, err)
	m, err := c.Migration(ctx, "users")
	require.NoError(t, err)
	assert.Equal(t, catalog.DefaultFlags(), m.Flags, "a new migration has the default flags")

	got, err := c.SetFlags(ctx, "users", m.Revision, []catalog.FlagChange{
		{Flag: "phase", To: "shadow"}, {Flag: "shadow_read_percent", To: "10"},
	}, "alice", "start shadowing")
	require.NoError(t, err)
	assert.Equal(t, m.Revision+1, got.Revision)
	assert.Equal(t, "shadow", got.Phase)
	assert.Equal(t, map[string]string{"read_source": "old", "shadow_read_percent": "10", "write_block": "false"}, got.Flags)

	stored, err := c.Migration(ctx, "users")
	require.NoError(t, err)
	assert.Equal(t, got.Phase, stored.Phase)
	assert.Equal(t, got.Flags, stored.Flags)
	assert.Equal(t, got.Revision, stored.Revision)

	// A rollback-like change of three flags, with From checked.
	got, err = c.SetFlags(ctx, "users", stored.Revision, []catalog.FlagChange{
		{Flag: "phase", From: "shadow", To: "off"}, {Flag: "read_source", To: "new"}, {Flag: "write_block", To: "true"},
	}, "bob", "rollback")
	require.NoError(t, err)
	assert.Equal(t, "off", got.Phase)
	assert.Equal(t, map[string]string{"shadow_read_percent": "10", "read_source": "new", "write_block": "true"}, got.Flags)

	audit, err := c.Audit(ctx, "users", 0)
	require.NoError(t, err)
	require.Len(t, audit, 3)
	last := audit[2]
	assert.Equal(t, "flags", last.Kind)
	assert.Equal(t, "bob", last.Who)
	assert.Equal(t, "rollback", last.Why)
	assert.Equal(t, got.Revision, last.Revision)
	assert.Equal(t, fmt.Sprintf("users#%d", got.Revision), last.ID)
	assert.Equal(t, "phase,read_source,write_block", last.Subject)
	assert.Equal(t, "phase=shadow read_source=old write_block=false", last.From)
	assert.Equal(t, "phase=off read_source=new write_block=true", last.To)
	assert.Equal(t, []catalog.FlagChange{
		{Flag: "phase", From: "shadow", To: "off"}, {Flag: "read_source", From: "old", To: "new"}, {Flag: "write_block", From: "false", To: "true"},
	}, last.Changes)
	single := audit[1]
	assert.Equal(t, "phase,shadow_read_percent", single.Subject)

	newest, err := c.AuditNewest(ctx, "users", 2)
	require.NoError(t, err)
	require.Len(t, newest, 2)
	assert.Equal(t, last.ID, newest[0].ID, "newest first")

	// SetPhase still works on top of flags and keeps them.
	require.NoError(t, c.SetPhase(ctx, "users", "off", "shadow", "carol", "again"))
	stored, err = c.Migration(ctx, "users")
	require.NoError(t, err)
	assert.Equal(t, "shadow", stored.Phase)
	assert.Equal(t, "new", stored.Flags["read_source"])

	all, err := c.Migrations(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	assert.Equal(t, stored, all[0])
}

func TestSetFlagsRefusals(t *testing.T) {
	c, _ := open(t)
	ctx := context.Background()
	_, err := c.RegisterSpec(ctx, "users", "v1", "x", "t")
	require.NoError(t, err)
	m, err := c.Migration(ctx, "users")
	require.NoError(t, err)

	for name, tc := range map[string]struct {
		rev     int64
		changes []catalog.FlagChange
		is      error
		msg     string
	}{
		"no changes":      {rev: m.Revision, changes: nil, msg: "no changes given"},
		"empty name":      {rev: m.Revision, changes: []catalog.FlagChange{{Flag: "", To: "x"}}, msg: "empty flag name"},
		"dotted name":     {rev: m.Revision, changes: []catalog.FlagChange{{Flag: "a.b", To: "x"}}, msg: `"a.b"`},
		"dollar name":     {rev: m.Revision, changes: []catalog.FlagChange{{Flag: "$set", To: "x"}}, msg: `"$set"`},
		"named twice":     {rev: m.Revision, changes: []catalog.FlagChange{{Flag: "phase", To: "shadow"}, {Flag: "phase", To: "dual"}}, msg: "phase named twice"},
		"stale revision":  {rev: m.Revision - 1, changes: []catalog.FlagChange{{Flag: "phase", To: "shadow"}}, is: catalog.ErrConflict, msg: "revision"},
		"future revision": {rev: m.Revision + 1, changes: []catalog.FlagChange{{Flag: "phase", To: "shadow"}}, is: catalog.ErrConflict},
		"wrong from":      {rev: m.Revision, changes: []catalog.FlagChange{{Flag: "phase", From: "dual", To: "cutover"}}, is: catalog.ErrConflict, msg: `it is "off"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := c.SetFlags(ctx, "users", tc.rev, tc.changes, "x", "y")
			require.Error(t, err)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
	_, err = c.SetFlags(ctx, "nobody", 0, []catalog.FlagChange{{Flag: "phase", To: "shadow"}}, "x", "y")
	assert.ErrorIs(t, err, catalog.ErrNotFound)

	after, err := c.Migration(ctx, "users")
	require.NoError(t, err)
	assert.Equal(t, m, after, "no refused change touched the migration")
	audit, err := c.Audit(ctx, "users", 0)
	require.NoError(t, err)
	assert.Len(t, audit, 1, "only the spec registration is audited")
}

func TestRacingSetFlagsHaveOneWinner(t *testing.T) {
	c, _ := open(t)
	ctx := context.Background()
	_, err := c.RegisterSpec(ctx, "orders", "v1", "x", "t")
	require.NoError(t, err)
	m, err := c.Migration(ctx, "orders")
	require.NoError(t, err)

	const racers = 8
	var wins, conflicts atomic.Int64
	var winner atomic.Value
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < racers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			who := fmt.Sprintf("proc-%d", i)
			_, err := c.SetFlags(ctx, "orders", m.Revision, []catalog.FlagChange{
				{Flag: "phase", To: "shadow"}, {Flag: "shadow_read_percent", To: fmt.Sprint(i)},
			}, who, "race")
			switch {
			case err == nil:
				wins.Add(1)
				winner.Store(i)
			case assert.ErrorIs(t, err, catalog.ErrConflict):
				conflicts.Add(1)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	require.Equal(t, int64(1), wins.Load())
	assert.Equal(t, int64(racers-1), conflicts.Load())

	got, err := c.Migration(ctx, "orders")
	require.NoError(t, err)
	w := winner.Load().(int)
	assert.Equal(t, m.Revision+1, got.Revision)
	assert.Equal(t, fmt.Sprint(w), got.Flags["shadow_read_percent"], "the stored values are the winner's")
	audit, err := c.Audit(ctx, "orders", 0)
	require.NoError(t, err)
	require.Len(t, audit, 2)
	assert.Equal(t, fmt.Sprintf("proc-%d", w), audit[1].Who, "only the winner is audited")
}

func TestLags(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	name := fmt.Sprintf("tandem_meta_test_%d", dbSeq.Add(1))
	t.Cleanup(func() { _ = client.Database(name).Drop(context.Background()) })
	c, err := catalog.Open(context.Background(), client, catalog.WithDatabase(name), catalog.WithClock(func() time.Time { return *clock.Load() }))
	require.NoError(t, err)
	ctx := context.Background()

	lags, err := c.Lags(ctx, "users")
	require.NoError(t, err)
	assert.Empty(t, lags)

	require.NoError(t, c.ReportLag(ctx, "users", "cdc-forward", 3*time.Second))
	later := now.Add(time.Second)
	clock.Store(&later)
	require.NoError(t, c.ReportLag(ctx, "users", "cdc-forward", 1500*time.Millisecond))
	require.NoError(t, c.ReportLag(ctx, "users", "cdc-reverse", 0))
	require.NoError(t, c.ReportLag(ctx, "other", "cdc-forward", time.Hour))

	lags, err = c.Lags(ctx, "users")
	require.NoError(t, err)
	require.Len(t, lags, 2, "one record per component and process")
	assert.Equal(t, "cdc-forward", lags[0].Component)
	assert.Equal(t, 1500*time.Millisecond, lags[0].Lag)
	assert.True(t, lags[0].UpdatedAt.Equal(later), "updated_at is the last report's time")
	assert.NotEmpty(t, lags[0].Owner)
	assert.Equal(t, "cdc-reverse", lags[1].Component)

	for name, tc := range map[string]struct {
		migration, component string
		lag                  time.Duration
		msg                  string
	}{
		"no migration": {"", "cdc", 0, "empty migration name"},
		"no component": {"users", "", 0, "empty component name"},
		"negative":     {"users", "cdc", -time.Second, "negative lag -1s"},
	} {
		t.Run(name, func(t *testing.T) {
			err := c.ReportLag(ctx, tc.migration, tc.component, tc.lag)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestDeadLettersByDirection(t *testing.T) {
	c, _ := open(t)
	ctx := context.Background()
	for i, dir := range []string{"forward", "reverse", "reverse"} {
		require.NoError(t, c.AddDeadLetter(ctx, catalog.DeadLetter{Migration: "users", KeyString: fmt.Sprintf(`"u%d"`, i), Key: i, Direction: dir, Step: "write", Reason: "x", SpecVersion: "v1"}))
	}
	rev, err := c.DeadLetters(ctx, "users", catalog.DeadLetterFilter{Direction: "reverse"})
	require.NoError(t, err)
	assert.Len(t, rev, 2)
	n, err := c.CountDeadLettersByDirection(ctx, "users", "reverse")
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)
	n, err = c.CountDeadLettersByDirection(ctx, "users", "forward")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)

	_, err = c.DeadLetters(ctx, "users", catalog.DeadLetterFilter{Direction: "sideways"})
	assert.ErrorContains(t, err, `direction "sideways"`)
	_, err = c.CountDeadLettersByDirection(ctx, "users", "")
	assert.ErrorContains(t, err, `direction ""`)
}
