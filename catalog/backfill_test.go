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

func TestBackfillPlanFirstWins(t *testing.T) {
	c, _ := open(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make([]catalog.BackfillPlan, 4)
	mine := make([]bool, 4)
	for i := range 4 {
		wg.Go(func() {
			p := catalog.BackfillPlan{Migration: "m", PlanID: string(rune('a' + i)), Partitions: 2}
			parts := []catalog.BackfillPartition{{Index: 0, Min: "a", Max: "m", Class: "string"}, {Index: 1, Min: "m", Class: "string"}}
			var err error
			results[i], mine[i], err = c.CreateBackfillPlan(ctx, p, parts)
			assert.NoError(t, err)
		})
	}
	wg.Wait()
	won := 0
	for i := range 4 {
		assert.Equal(t, results[0].PlanID, results[i].PlanID, "everyone follows one plan")
		if mine[i] {
			won++
		}
	}
	assert.Equal(t, 1, won)
	parts, err := c.BackfillPartitions(ctx, "m", results[0].PlanID)
	require.NoError(t, err)
	require.Len(t, parts, 2)
	assert.Equal(t, "m", parts[1].Min)
	assert.Nil(t, parts[1].Max)
}

func TestBackfillLeaseClaimsAndGenerations(t *testing.T) {
	c, _ := open(t)
	ctx := context.Background()
	base := catalog.BackfillLease{Migration: "m", PlanID: "p", Partition: 3, Generation: 1, ExpiresAt: time.Now().Add(time.Minute)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	for _, owner := range []string{"a", "b", "c", "d"} {
		wg.Go(func() {
			l := base
			l.Owner = owner
			err := c.ClaimBackfillLease(ctx, l)
			if err == nil {
				mu.Lock()
				winners = append(winners, owner)
				mu.Unlock()
			} else {
				assert.True(t, errors.Is(err, catalog.ErrConflict), "%v", err)
			}
		})
	}
	wg.Wait()
	require.Len(t, winners, 1, "one claim of a generation wins")

	l := base
	l.Owner, l.After, l.HasAfter, l.Copied, l.Pending = winners[0], int64(42), true, 7, []any{"x", int32(1)}
	require.NoError(t, c.SaveBackfillLease(ctx, l))
	other := l
	other.Owner = "intruder"
	assert.ErrorIs(t, c.SaveBackfillLease(ctx, other), catalog.ErrNotFound, "only the owner writes its generation")

	next := l
	next.Generation, next.Owner = 2, "e"
	require.NoError(t, c.ClaimBackfillLease(ctx, next))
	ok, err := c.BackfillLeaseExists(ctx, "m", "p", 3, 2)
	require.NoError(t, err)
	assert.True(t, ok)
	leases, err := c.BackfillLeases(ctx, "m", "p")
	require.NoError(t, err)
	got := leases[3]
	assert.Equal(t, int64(2), got.Generation, "the newest generation is the partition's state")
	assert.Equal(t, int64(42), got.After)
	assert.Equal(t, int64(7), got.Copied)
	assert.Equal(t, []any{"x", int32(1)}, got.Pending)
}

func TestBackfillControlChangesAreAudited(t *testing.T) {
	c, _ := open(t)
	ctx := context.Background()
	_, err := c.ChangeBackfillControl(ctx, "m", "x", "y", func(ctl catalog.BackfillControl) (catalog.BackfillControl, catalog.AuditEntry, error) {
		return ctl, catalog.AuditEntry{}, nil
	})
	assert.ErrorIs(t, err, catalog.ErrNotFound)
	_, _, err = c.CreateBackfillPlan(ctx, catalog.BackfillPlan{Migration: "m", PlanID: "p"}, nil)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			_, err := c.ChangeBackfillControl(ctx, "m", "op", "bump", func(ctl catalog.BackfillControl) (catalog.BackfillControl, catalog.AuditEntry, error) {
				ctl.Rate++
				return ctl, catalog.AuditEntry{Subject: "rate"}, nil
			})
			assert.NoError(t, err, "change %d", i)
		})
	}
	wg.Wait()
	p, err := c.BackfillPlan(ctx, "m")
	require.NoError(t, err)
	assert.Equal(t, float64(5), p.Control.Rate, "no racing change is lost")
	assert.Equal(t, int64(5), p.Control.Revision)
	audit, err := c.Audit(ctx, "m", 0)
	require.NoError(t, err)
	assert.Len(t, audit, 5)
	for _, a := range audit {
		assert.Equal(t, catalog.KindBackfill, a.Kind)
		assert.Equal(t, "op", a.Who)
	}
}
