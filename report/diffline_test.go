package report

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/transform"
)

// TestParseDiffReadsWhatTransformDiffWrites feeds parseDiff the lines transform.Diff makes,
// including values that look like the line's own punctuation and values cut short.
func TestParseDiffReadsWhatTransformDiffWrites(t *testing.T) {
	long := strings.Repeat("x", 80)
	tricky := `a", got string "b`
	want := bson.D{
		{Key: "age", Value: int64(18)},
		{Key: "tricky", Value: tricky},
		{Key: "long", Value: long + "1"},
		{Key: "gone", Value: "secret-gone"},
		{Key: "profile", Value: bson.D{{Key: "email", Value: "a@b"}}},
	}
	got := bson.D{
		{Key: "age", Value: "18"},
		{Key: "tricky", Value: "c"},
		{Key: "long", Value: long + "2"},
		{Key: "profile", Value: bson.D{{Key: "email", Value: "a@c"}}},
		{Key: "added", Value: bson.A{int32(1)}},
	}
	lines := transform.Diff(want, got)
	require.Len(t, lines, 6, "%q", lines)
	kind, fields := parseDiff(lines)
	assert.Equal(t, KindDiffering, kind)
	byPath := map[string]FieldDiff{}
	for _, f := range fields {
		assert.Nil(t, f.Detail, "every line is read exactly: %+v", f)
		byPath[f.Path] = f
	}
	assert.Equal(t, "int64", byPath["age"].Want.Type)
	assert.Equal(t, `{"$numberLong":"18"}`, *byPath["age"].Want.Value)
	assert.Equal(t, "string", byPath["age"].Got.Type)
	assert.Equal(t, `"18"`, *byPath["age"].Got.Value)
	assert.Equal(t, `"a\", got string \"b"`, *byPath["tricky"].Want.Value, "a value that quotes the separator stays whole")
	assert.Equal(t, `"c"`, *byPath["tricky"].Got.Value)
	assert.Len(t, *byPath["long"].Want.Value, renderCut, "a value cut short is read to its cut")
	assert.Equal(t, byPath["long"].Want.Hash, byPath["long"].Got.Hash, "long values cut alike hash alike (documented)")
	assert.Equal(t, ChangeMissing, byPath["gone"].Change)
	assert.Nil(t, byPath["gone"].Got)
	assert.Equal(t, ChangeDiffers, byPath["profile.email"].Change)
	assert.Equal(t, ChangeUnexpected, byPath["added"].Change)
	assert.Equal(t, "bson.A", byPath["added"].Got.Type)
}

func TestParseDiffKeepsUnreadableTextOutOfValueFreeFields(t *testing.T) {
	for _, tc := range []struct {
		line, kind, path string
	}{
		{"missing in the new store", KindMissing, ""},
		{"extra in the new store: the old store has no document with this key", KindExtra, ""},
		{"document missing from the new store", KindMissing, ""},
		{`transform failed: forward[3] convert age: "secret-x" is not an int32`, KindUntransformable, ""},
		{`the new store cannot hold the transformed document: item "secret-x" too large`, KindUntransformable, ""},
		{`age: want secret-x y`, KindDiffering, "age"},
		{`age: something secret-x`, KindDiffering, "age"},
		{`no colon secret-x`, KindDiffering, ""},
	} {
		t.Run(tc.line, func(t *testing.T) {
			kind, fields := parseDiff([]string{tc.line})
			require.Len(t, fields, 1)
			assert.Equal(t, tc.kind, kind)
			assert.Equal(t, tc.path, fields[0].Path)
			r := Report{Verification: Verification{Top: []Mismatch{{Fields: fields}}}}.WithoutValues()
			f := r.Verification.Top[0].Fields[0]
			assert.Nil(t, f.Detail)
			for _, text := range []string{f.Path, f.Note, valueText(f.Want), valueText(f.Got)} {
				assert.NotContains(t, text, "secret-x", "value-free fields never quote the line's values")
			}
		})
	}
}
