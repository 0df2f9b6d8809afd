package backfill_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/backfill"
)

// TestCopiesEveryKeyType copies keys of every type an _id commonly has — strings, ObjectIDs,
// int32, int64 and doubles (one class to MongoDB), sub-documents — and checks that the plan
// has ranges of each class and that nothing is skipped.
func TestCopiesEveryKeyType(t *testing.T) {
	e := newEnv(t, "")
	var docs []any
	for i := range 40 {
		docs = append(docs,
			bson.D{{Key: "_id", Value: fmt.Sprintf("s%03d", i)}, {Key: "name", Value: "s"}},
			bson.D{{Key: "_id", Value: bson.NewObjectID()}, {Key: "name", Value: "o"}},
			bson.D{{Key: "_id", Value: int32(i * 3)}, {Key: "name", Value: "i32"}},
			bson.D{{Key: "_id", Value: int64(i*3+1) + 1<<40}, {Key: "name", Value: "i64"}},
			bson.D{{Key: "_id", Value: float64(i*3) + 0.5}, {Key: "name", Value: "dbl"}},
			bson.D{{Key: "_id", Value: bson.D{{Key: "a", Value: int32(i)}, {Key: "b", Value: "x"}}}, {Key: "name", Value: "doc"}},
		)
	}
	e.insert(t, docs)
	ctx := context.Background()

	dry, err := backfill.Plan(ctx, e.config())
	require.NoError(t, err)
	assert.False(t, dry.Stored)
	assert.Equal(t, int64(240), dry.Estimate)
	classes := map[string]int64{}
	for _, c := range dry.Classes {
		classes[c.Class] = c.Count
	}
	assert.Equal(t, map[string]int64{"number": 120, "string": 40, "object": 40, "objectId": 40}, classes)
	partClasses := map[string]int{}
	for _, p := range dry.Partitions {
		partClasses[p.Class]++
	}
	assert.Len(t, partClasses, 4, "a range per class at least: %v", partClasses)
	assert.NotEmpty(t, dry.Sample)
	assert.Empty(t, dry.Sample[0].Error)
	assert.NotNil(t, dry.Sample[0].Target)
	exists, err := e.new.Exists(ctx)
	require.NoError(t, err)
	assert.False(t, exists, "a dry run writes nothing")
	_, err = backfill.Status(ctx, e.cat, e.migration)
	assert.ErrorIs(t, err, backfill.ErrNotStarted)

	start := time.Now()
	sum, err := backfill.Run(ctx, e.config())
	require.NoError(t, err)
	t.Logf("copied %d documents in %s", sum.Copied, time.Since(start).Round(time.Millisecond))
	assert.Equal(t, int64(240), sum.Copied)
	assert.Equal(t, int64(240), sum.Progress.Copied)
	assert.Equal(t, backfill.StateDone, sum.Progress.State)
	assert.Equal(t, sum.Progress.Partitions, sum.Progress.PartitionsDone)
	e.checkCopy(t)

	// The target was created with the spec's indexes.
	specs, err := e.dst.Indexes().ListSpecifications(ctx)
	require.NoError(t, err)
	names := map[string]bool{}
	for _, s := range specs {
		names[s.Name] = true
	}
	assert.True(t, names["profile.name_1"] && names["by_n"], "indexes %v", names)

	// A second run finds every partition done and copies nothing.
	sum, err = backfill.Run(ctx, e.config())
	require.NoError(t, err)
	assert.Zero(t, sum.Copied)
}
