package cdc_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/shadow"
)

// backfillState stores a plan with three partitions of users-test in cat: strings [a, m) being
// copied (checkpoint "f", batch "g","h" pending), strings [m, +∞) never claimed, numbers done.
func backfillState(t *testing.T, cat *catalog.Catalog) catalog.BackfillLease {
	t.Helper()
	ctx := context.Background()
	plan := catalog.BackfillPlan{Migration: "users-test", PlanID: "p1", Partitions: 3}
	parts := []catalog.BackfillPartition{
		{Index: 0, Class: "string", Min: "a", Max: "m"},
		{Index: 1, Class: "string", Min: "m"},
		{Index: 2, Class: "number", Min: int32(0)},
	}
	_, mine, err := cat.CreateBackfillPlan(ctx, plan, parts)
	require.NoError(t, err)
	require.True(t, mine)
	now := time.Now()
	copying := catalog.BackfillLease{Migration: "users-test", PlanID: "p1", Partition: 0, Generation: 1, Owner: "copier",
		ClaimedAt: now, ExpiresAt: now.Add(time.Hour), UpdatedAt: now, After: "f", HasAfter: true, Pending: []any{"g", "h"}}
	require.NoError(t, cat.ClaimBackfillLease(ctx, copying))
	require.NoError(t, cat.ClaimBackfillLease(ctx, catalog.BackfillLease{Migration: "users-test", PlanID: "p1", Partition: 2,
		Generation: 1, Owner: "copier", ClaimedAt: now, ExpiresAt: now.Add(time.Hour), UpdatedAt: now, Done: true}))
	return copying
}

// TestBackfillInterplayClassifies checks the rule against a plan and leases in the catalog.
func TestBackfillInterplayClassifies(t *testing.T) {
	f := newCSFixture(t)
	ctx := context.Background()
	ip := cdc.NewBackfillInterplay(f.cat, "users-test")
	none, err := ip.Classify(ctx, []cdc.Change{{Key: "z", Op: cdc.OpInsert}})
	require.NoError(t, err)
	assert.Equal(t, []cdc.Disposition{cdc.ConvergeNow}, none, "without a backfill plan")

	backfillState(t, f.cat)
	cases := []struct {
		key  any
		op   cdc.Op
		want cdc.Disposition
	}{
		{"b", cdc.OpUpdate, cdc.ConvergeNow},                          // behind the checkpoint
		{"f", cdc.OpUpdate, cdc.ConvergeNow},                          // the checkpoint itself was copied
		{"g", cdc.OpUpdate, cdc.AfterBatch},                           // in the batch being written
		{"gg", cdc.OpInsert, cdc.ConvergeNow},                         // a new key in the batch's range: in no batch
		{"k", cdc.OpUpdate, cdc.ConvergeNow},                          // beyond the checkpoint: the copy may have read past it
		{"k", cdc.OpDelete, cdc.ConvergeNow},                          // a delete: the copy removes nothing
		{"q", cdc.OpInsert, cdc.LeaveToCopy},                          // a partition nobody claimed yet
		{int64(5), cdc.OpInsert, cdc.ConvergeNow},                     // a done partition
		{int32(-1), cdc.OpInsert, cdc.ConvergeNow},                    // below the first key of its class: in no partition
		{"A", cdc.OpInsert, cdc.ConvergeNow},                          // below "a"
		{bson.NewObjectID(), cdc.OpInsert, cdc.ConvergeNow},           // a class the plan does not have
		{bson.D{{Key: "x", Value: 1}}, cdc.OpInsert, cdc.ConvergeNow}, // an order this code does not know
	}
	changes := make([]cdc.Change, len(cases))
	for i, c := range cases {
		changes[i] = cdc.Change{Key: c.key, Op: c.op}
	}
	got, err := ip.Classify(ctx, changes)
	require.NoError(t, err)
	for i, c := range cases {
		assert.Equal(t, c.want, got[i], "%v %s", c.key, c.op)
	}
}

// TestTailerWaitsForTheBatchBeingCopied runs a forward tailer beside a backfill's state: a
// change to a key of the batch being written is converged only once the batch's checkpoint
// lands; a key of a partition nobody has claimed is left to the copy; one behind or beyond the
// copy position of a claimed partition is converged at once.
func TestTailerWaitsForTheBatchBeingCopied(t *testing.T) {
	f := newCSFixture(t)
	ctx := context.Background()
	copying := backfillState(t, f.cat)
	src, err := cdc.NewChangeStream(cdc.ChangeStreamConfig{Collection: f.oldColl, Poll: 20 * time.Millisecond, Logger: f.log})
	require.NoError(t, err)
	tl, err := cdc.NewTailer(cdc.TailerConfig{
		Migration: "users-test", Direction: shadow.Forward, Source: src, Engine: f.engine, Checkpoints: f.cat,
		Interplay: cdc.NewBackfillInterplay(f.cat, "users-test"), DeferPoll: 20 * time.Millisecond, DeferMax: waitLimit,
		Metrics: f.metrics, Logger: f.log,
	})
	require.NoError(t, err)
	start(t, tl)
	// b and k first: the tailer waits for g's batch before it takes the next batch, so b and k
	// must not be read after g, however the stream splits the four inserts into batches.
	for _, id := range []string{"b", "k", "g", "q"} {
		_, err := f.oldColl.InsertOne(ctx, oldDoc(id, 1))
		require.NoError(t, err)
	}
	has := func(id string) bool {
		n, err := f.newColl.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
		require.NoError(t, err)
		return n == 1
	}
	eventually(t, "b and k converged", func() bool { return has("b") && has("k") })
	eventually(t, "g waiting for its batch", func() bool {
		return metric(t, f.reg, "tandem_cdc_backfill_interplay_total", map[string]string{"disposition": "after_batch"}) == 1
	})
	assert.False(t, has("g"), "g converged while its batch was being written")

	// The batch lands: its checkpoint moves past g and h.
	copying.After, copying.Pending, copying.UpdatedAt = "h", nil, time.Now()
	require.NoError(t, f.cat.SaveBackfillLease(ctx, copying))
	eventually(t, "g converged after its batch landed", func() bool { return has("g") })
	eventually(t, "q left to the copy", func() bool {
		return metric(t, f.reg, "tandem_cdc_backfill_interplay_total", map[string]string{"disposition": "left_to_copy"}) == 1
	})
	assert.False(t, has("q"), "q, in a partition nobody has claimed, was converged: the copy will read it")

}
