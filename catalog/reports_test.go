package catalog_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/catalog"
)

func TestReleaseReportsAndSignOffs(t *testing.T) {
	ctx := context.Background()
	c, _ := open(t)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	first, second := bson.NewObjectID().Hex(), bson.NewObjectID().Hex()
	require.NoError(t, c.SaveReleaseReport(ctx, "m", first, `{"n":1}`, at))
	require.NoError(t, c.SaveReleaseReport(ctx, "m", second, `{"n":2}`, at.Add(time.Minute)))
	require.Error(t, c.SaveReleaseReport(ctx, "m", "nope", `{}`, at), "the id must be an ObjectID")
	require.NoError(t, c.SaveVerifySummary(ctx, "m", catalog.VerifySummary{Keys: 1, Clean: true}))

	r, err := c.ReleaseReport(ctx, "m", first)
	require.NoError(t, err)
	assert.Equal(t, `{"n":1}`, r.Content)
	assert.Equal(t, catalog.ReportKindRelease, r.Kind)
	r, err = c.ReleaseReport(ctx, "m", catalog.LatestReport)
	require.NoError(t, err)
	assert.Equal(t, second, r.ID.Hex(), "latest is the newest release report, not the newer verify summary")
	for _, tc := range []struct{ migration, id string }{{"other", first}, {"m", bson.NewObjectID().Hex()}, {"m", "zz"}, {"other", catalog.LatestReport}} {
		_, err := c.ReleaseReport(ctx, tc.migration, tc.id)
		assert.ErrorIs(t, err, catalog.ErrNotFound, "%+v", tc)
	}

	require.NoError(t, c.RecordSignOff(ctx, catalog.SignOff{Migration: "m", ReportID: first, Verdict: "PASS", By: "Ada", Comment: "go", Recorder: "api:ada"}))
	require.NoError(t, c.RecordSignOff(ctx, catalog.SignOff{Migration: "m", ReportID: first, Verdict: "PASS", By: "Grace", Comment: "agreed", Recorder: "api:grace"}))
	require.Error(t, c.RecordSignOff(ctx, catalog.SignOff{Migration: "m", ReportID: first}), "a sign-off names its signer")
	signs, err := c.SignOffs(ctx, "m", first)
	require.NoError(t, err)
	require.Len(t, signs, 2)
	assert.Equal(t, "Ada", signs[0].By)
	assert.Equal(t, "go", signs[0].Comment)
	assert.Equal(t, "PASS", signs[0].Verdict)
	assert.Equal(t, "api:ada", signs[0].Recorder)
	assert.Equal(t, "Grace", signs[1].By)
	none, err := c.SignOffs(ctx, "m", second)
	require.NoError(t, err)
	assert.Empty(t, none, "sign-offs belong to one report")
	audit, err := c.Audit(ctx, "m", 0)
	require.NoError(t, err)
	require.Len(t, audit, 2)
	assert.Equal(t, catalog.KindSignOff, audit[0].Kind)
	assert.Equal(t, first, audit[0].Subject)
	assert.Equal(t, "Ada", audit[0].To)
}

func TestMismatchesFoundBetween(t *testing.T) {
	ctx := context.Background()
	c, _ := open(t)
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i, src := range []string{"verify", "shadow-read", "verify", "verify"} {
		_, err := c.RecordMismatch(ctx, catalog.Mismatch{Migration: "m", Key: i, Source: src, FoundAt: base.Add(time.Duration(i) * time.Second)})
		require.NoError(t, err)
	}
	got, err := c.MismatchesFoundBetween(ctx, "m", "verify", base, base.Add(2*time.Second), 0)
	require.NoError(t, err)
	require.Len(t, got, 2, "the window's verify mismatches, bounds included")
	assert.EqualValues(t, 0, got[0].Key)
	assert.EqualValues(t, 2, got[1].Key)
	got, err = c.MismatchesFoundBetween(ctx, "m", "", base.Add(time.Second), base.Add(3*time.Second), 2)
	require.NoError(t, err)
	require.Len(t, got, 2, "any source, at most the limit")
	assert.Equal(t, "shadow-read", got[0].Source)
}
