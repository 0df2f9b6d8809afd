package backfill_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/backfill"
)

// TestLeaseRecordChangedUnderAWorker: when a checkpoint finds its lease record gone to another
// owner (or gone), the worker gives the partition up at once rather than retrying the write
// forever (which once held the lease's lock, stopped every renewal of the process and hung the
// backfill); the partition is claimed again once its lease expires and the copy finishes whole.
func TestLeaseRecordChangedUnderAWorker(t *testing.T) {
	e := newEnv(t, "")
	e.seed(t, 300)
	ctx := context.Background()
	cfg := e.config()
	cfg.Rate = 100 // slow enough to catch a partition in the middle
	cfg.Batch, cfg.Chunk = 10, 5
	done := make(chan error, 1)
	go func() { _, err := backfill.Run(ctx, cfg); done <- err }()

	leases := client.Database(e.db + "_meta").Collection("backfill_leases")
	waitFor(t, 30*time.Second, func() bool {
		n, err := leases.CountDocuments(ctx, bson.D{{Key: "done", Value: false}, {Key: "copied", Value: bson.D{{Key: "$gt", Value: 0}}}})
		return err == nil && n > 0
	})
	res, err := leases.UpdateMany(ctx, bson.D{{Key: "done", Value: false}, {Key: "copied", Value: bson.D{{Key: "$gt", Value: 0}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "owner", Value: "an operator's mistake"}}}})
	require.NoError(t, err)
	require.Positive(t, res.ModifiedCount)

	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(3 * time.Minute):
		t.Fatal("the backfill did not finish within 3 minutes after its lease records changed owner")
	}
	e.checkCopy(t)
	p, err := backfill.Status(ctx, e.cat, e.migration)
	require.NoError(t, err)
	assert.Equal(t, backfill.StateDone, p.State)
	assert.Equal(t, int64(300), p.Copied)
}
