package backfill_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/shadow"
)

// TestLiveWritesAreNotOverwritten changes the source between a batch's read and its write —
// one update and one delete, each converged at once as the proxy would — and checks that the
// batch's older copy does not stay in the target. Without the re-check (the test-only
// NoRecheck) it does: that case shows the test would catch the rule's removal.
func TestLiveWritesAreNotOverwritten(t *testing.T) {
	for _, tc := range []struct {
		name      string
		noRecheck bool
	}{{"with the re-check", false}, {"without the re-check", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, "")
			e.seed(t, 120)
			ctx := context.Background()
			cfg := e.config()
			cfg.Workers, cfg.Partitions = 1, 1
			var once sync.Once
			backfill.WithHooks(&cfg, backfill.Hooks{NoRecheck: tc.noRecheck, AfterRead: func(ctx context.Context, keys []adapters.Key) {
				once.Do(func() {
					// A live update and a live delete of two keys the batch has read, each
					// converged before the batch lands.
					_, err := e.src.UpdateOne(ctx, bson.D{{Key: "_id", Value: keys[3]}}, bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: "changed live"}}}})
					require.NoError(t, err)
					_, err = e.src.DeleteOne(ctx, bson.D{{Key: "_id", Value: keys[7]}})
					require.NoError(t, err)
					for _, k := range []adapters.Key{keys[3], keys[7]} {
						_, err := e.engine.Converge(ctx, k, shadow.Forward)
						require.NoError(t, err)
					}
				})
			}})
			sum, err := backfill.Run(ctx, cfg)
			require.NoError(t, err)
			got, err := e.new.Get(ctx, "u00003")
			require.NoError(t, err)
			name := profileName(got)
			_, delErr := e.new.Get(ctx, "u00007")
			if tc.noRecheck {
				assert.Equal(t, "user 3", name, "without the re-check the batch's older copy overwrites the live update")
				assert.NoError(t, delErr, "without the re-check the deleted document comes back")
				return
			}
			assert.Equal(t, "changed live", name)
			assert.ErrorIs(t, delErr, adapters.ErrNotFound)
			assert.Equal(t, int64(2), sum.Reconverged)
			e.checkCopy(t)
		})
	}
}

// TestCrashBetweenWriteAndRecheck deletes a key live between a batch's read and its write, then
// stops the run right after the write, before the re-check, as a crash would: the resurrected
// document is in the target. The next run claims the partition, converges the keys the batch
// announced (Pending) and removes it.
func TestCrashBetweenWriteAndRecheck(t *testing.T) {
	e := newEnv(t, "")
	e.seed(t, 60)
	ctx := context.Background()
	cfg := e.config()
	cfg.Workers, cfg.Partitions = 1, 1
	var deleted adapters.Key
	backfill.WithHooks(&cfg, backfill.Hooks{
		AfterRead: func(ctx context.Context, keys []adapters.Key) {
			if deleted == nil {
				deleted = keys[5]
				_, err := e.src.DeleteOne(ctx, bson.D{{Key: "_id", Value: deleted}})
				require.NoError(t, err)
				_, err = e.engine.Converge(ctx, deleted, shadow.Forward)
				require.NoError(t, err)
			}
		},
		AfterWrite: func(context.Context, []adapters.Key) error { return backfill.ErrAborted },
	})
	_, err := backfill.Run(ctx, cfg)
	require.True(t, errors.Is(err, backfill.ErrAborted), "%v", err)
	_, err = e.new.Get(ctx, deleted)
	require.NoError(t, err, "the crash left the older copy in the target")

	sum, err := backfill.Run(ctx, e.config())
	require.NoError(t, err)
	_, err = e.new.Get(ctx, deleted)
	assert.ErrorIs(t, err, adapters.ErrNotFound)
	assert.GreaterOrEqual(t, sum.Reconverged, int64(1))
	e.checkCopy(t)
	assert.Equal(t, int64(59), sum.Progress.Copied)
}

// profileName returns a target document's profile.name.
func profileName(d bson.D) any {
	for _, e := range d {
		if p, ok := e.Value.(bson.D); ok && e.Key == "profile" {
			for _, f := range p {
				if f.Key == "name" {
					return f.Value
				}
			}
		}
	}
	return nil
}
