package backfill_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/backfill"
)

// countingStore is the real MongoStore, counting the documents that reach it as inserts
// and as upserts.
type countingStore struct {
	*adapters.MongoStore
	inserted, upserted atomic.Int64
}

func (s *countingStore) InsertNew(ctx context.Context, ops []adapters.WriteOp) ([]int, error) {
	present, err := s.MongoStore.InsertNew(ctx, ops)
	if err == nil {
		s.inserted.Add(int64(len(ops) - len(present)))
	}
	return present, err
}

func (s *countingStore) BulkWrite(ctx context.Context, ops []adapters.WriteOp) error {
	err := s.MongoStore.BulkWrite(ctx, ops)
	if err == nil {
		s.upserted.Add(int64(len(ops)))
	}
	return err
}

// TestInsertsNewKeysAndReplacesHeldOnes: the backfill inserts the keys the target lacks and
// upserts those it holds (here stale documents written before, with AllowExisting): the target
// ends an exact copy either way. Into an empty target every document is an insert.
func TestInsertsNewKeysAndReplacesHeldOnes(t *testing.T) {
	ctx := context.Background()
	run := func(t *testing.T, e *env) *countingStore {
		dst := &countingStore{MongoStore: e.new}
		cfg := e.config()
		cfg.New, cfg.AllowExisting = dst, true
		sum, err := backfill.Run(ctx, cfg)
		require.NoError(t, err)
		assert.Equal(t, int64(200), sum.Copied)
		e.checkCopy(t)
		return dst
	}
	t.Run("empty target", func(t *testing.T) {
		e := newEnv(t, "")
		e.seed(t, 200)
		dst := run(t, e)
		assert.Equal(t, int64(200), dst.inserted.Load(), "every document inserted")
		assert.Zero(t, dst.upserted.Load(), "no upserts")
	})
	t.Run("target holding stale documents", func(t *testing.T) {
		e := newEnv(t, "")
		e.seed(t, 200)
		// Stale versions of the first 60 keys (whole chunks held) and of every 10th after them.
		var stale []any
		for i := range 200 {
			if i < 60 || i%10 == 0 {
				stale = append(stale, bson.D{{Key: "_id", Value: fmt.Sprintf("u%05d", i)}, {Key: "old", Value: true}})
			}
		}
		_, err := e.dst.InsertMany(ctx, stale)
		require.NoError(t, err)
		dst := run(t, e)
		held := int64(len(stale))
		assert.Positive(t, dst.inserted.Load(), "keys the target lacked were inserted")
		assert.LessOrEqual(t, dst.inserted.Load(), 200-held)
		assert.GreaterOrEqual(t, dst.upserted.Load(), held, "every key the target held was upserted")
		assert.Equal(t, int64(200), dst.inserted.Load()+dst.upserted.Load(), "each document written once")
	})
}
