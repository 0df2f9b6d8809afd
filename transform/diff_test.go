package transform_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/transform"
)

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		name      string
		want, got bson.D
		diff      []string
	}{
		{"equal, other field order",
			bson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: "x"}},
			bson.D{{Key: "b", Value: "x"}, {Key: "a", Value: int32(1)}}, nil},
		{"type differs",
			bson.D{{Key: "age", Value: int64(18)}},
			bson.D{{Key: "age", Value: int32(18)}},
			[]string{`age: want int64 {"$numberLong":"18"}, got int32 {"$numberInt":"18"}`}},
		{"missing and unexpected",
			bson.D{{Key: "a", Value: "x"}},
			bson.D{{Key: "b", Value: "y"}},
			[]string{`a: missing (want string "x")`, `b: unexpected string "y"`}},
		{"nested",
			bson.D{{Key: "profile", Value: bson.D{{Key: "name", Value: "A"}, {Key: "email", Value: "a@x"}}}},
			bson.D{{Key: "profile", Value: bson.D{{Key: "name", Value: "B"}, {Key: "email", Value: "a@x"}}}},
			[]string{`profile.name: want string "A", got string "B"`}},
		{"array elements",
			bson.D{{Key: "tags", Value: bson.A{"a", bson.D{{Key: "k", Value: int32(1)}}}}},
			bson.D{{Key: "tags", Value: bson.A{"a", bson.D{{Key: "k", Value: int32(2)}}}}},
			[]string{`tags.1.k: want int32 {"$numberInt":"1"}, got int32 {"$numberInt":"2"}`}},
		{"array lengths",
			bson.D{{Key: "tags", Value: bson.A{"a"}}},
			bson.D{{Key: "tags", Value: bson.A{"a", "b"}}},
			[]string{`tags: want bson.A ["a"], got bson.A ["a","b"]`}},
		{"document against scalar",
			bson.D{{Key: "p", Value: bson.D{{Key: "x", Value: "1"}}}},
			bson.D{{Key: "p", Value: "1"}},
			[]string{`p: want bson.D {"x":"1"}, got string "1"`}},
		{"long values are cut",
			bson.D{{Key: "s", Value: "0123456789012345678901234567890123456789012345678901234567890123456789"}},
			bson.D{{Key: "s", Value: ""}},
			[]string{`s: want string "01234567890123456789012345678901234567890123456789012345..., got string ""`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := transform.Diff(tc.want, tc.got)
			assert.Equal(t, tc.diff, d)
			assert.Equal(t, len(d) == 0, transform.Equal(tc.want, tc.got), "Diff is empty exactly when Equal")
		})
	}
}
