package backfill_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
)

// TestDeadLetters copies a collection with one document the transform rejects and one whose
// transform is over MongoDB's 16 MiB limit: both become dead letters with their key and reason
// (the size named), the copy goes on, and the summary counts them.
func TestDeadLetters(t *testing.T) {
	e := newEnv(t, `  - convert: {path: n, from: int32, to: int64}
  - compute: {path: blob2, expr: 'has(doc.blob) ? doc.blob : ""'}
`)
	e.seed(t, 40)
	ctx := context.Background()
	_, err := e.src.InsertOne(ctx, bson.D{{Key: "_id", Value: "u00010x"}, {Key: "name", Value: "bad"}, {Key: "n", Value: "not a number"}})
	require.NoError(t, err)
	_, err = e.src.InsertOne(ctx, bson.D{{Key: "_id", Value: "u00020x"}, {Key: "name", Value: "big"}, {Key: "blob", Value: strings.Repeat("x", 9<<20)}})
	require.NoError(t, err)

	sum, err := backfill.Run(ctx, e.config())
	require.NoError(t, err)
	assert.Equal(t, int64(40), sum.Copied)
	assert.Equal(t, int64(2), sum.DeadLettered)
	assert.Equal(t, int64(2), sum.Progress.DeadLettered)
	dls, err := e.cat.DeadLetters(ctx, e.migration, catalog.DeadLetterFilter{})
	require.NoError(t, err)
	require.Len(t, dls, 2)
	byKey := map[string]catalog.DeadLetter{}
	for _, d := range dls {
		byKey[d.KeyString] = d
	}
	bad, big := byKey[`"u00010x"`], byKey[`"u00020x"`]
	assert.Equal(t, "backfill forward[2] convert n", bad.Step)
	assert.Contains(t, big.Reason, `key "u00020x"`)
	assert.Contains(t, big.Reason, "over MongoDB's limit of 16777216")
	assert.Equal(t, e.spec.Version, big.SpecVersion)
	n, err := e.dst.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.Equal(t, int64(40), n)
}
