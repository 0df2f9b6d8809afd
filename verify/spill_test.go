package verify

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/transform"
)

func rec(t *testing.T, key string, flags byte) spillRecord {
	t.Helper()
	kb, err := bson.Marshal(bson.D{{Key: "k", Value: key}})
	require.NoError(t, err)
	r := spillRecord{flags: flags, ks: adapters.KeyString(key), key: kb}
	copy(r.digest[:], key)
	return r
}

// readAll returns the keys of every record of one side, bucket by bucket.
func readAll(t *testing.T, s *spill, side int) []string {
	t.Helper()
	var out []string
	for b := range s.buckets {
		require.NoError(t, s.read(side, b, func(r spillRecord) error {
			assert.Equal(t, b, bucketOf(r.ks, s.buckets), "a record in its key's bucket")
			var d bson.D
			require.NoError(t, bson.Unmarshal(r.key, &d))
			out = append(out, d[0].Value.(string))
			return nil
		}))
	}
	return out
}

// TestSpillResumeCutsBackToTheCheckpoint: records added after a checkpoint, written to the
// files or still buffered, are gone after a resume at its sizes; those before it are there,
// once each, with their flags.
func TestSpillResumeCutsBackToTheCheckpoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spill")
	s, err := openSpill(dir, 8, nil)
	require.NoError(t, err)
	var before []string
	var recs []spillRecord
	for i := range 2000 { // enough to fill some buffers, so that files are written before the checkpoint
		k := fmt.Sprintf("k%05d", i)
		before = append(before, k)
		recs = append(recs, rec(t, k, byte(i%3)))
	}
	calls := 0
	require.NoError(t, s.add(sideOld, recs, func() { calls++ }))
	require.NoError(t, s.add(sideNew, recs[:10], func() { calls++ }))
	assert.Equal(t, 2, calls)
	var sizes []int64
	require.NoError(t, s.checkpoint(func(sz []int64) { sizes = sz }))
	require.Len(t, sizes, 16)
	var after []spillRecord
	for i := range 3000 {
		after = append(after, rec(t, fmt.Sprintf("late%05d", i), 0))
	}
	require.NoError(t, s.add(sideOld, after, func() {}))
	require.NoError(t, s.add(sideNew, after, func() {}))
	assert.Len(t, readAll(t, s, sideOld), 2000+3000-countBuffered(s, sideOld), "written files hold what was flushed")

	r, err := openSpill(dir, 8, sizes)
	require.NoError(t, err)
	assert.ElementsMatch(t, before, readAll(t, r, sideOld))
	assert.ElementsMatch(t, before[:10], readAll(t, r, sideNew))
	flags := map[string]byte{}
	for b := range 8 {
		require.NoError(t, r.read(sideOld, b, func(x spillRecord) error { flags[x.ks] = x.flags; return nil }))
	}
	assert.Equal(t, byte(1), flags[adapters.KeyString("k00001")])
	assert.Equal(t, byte(2), flags[adapters.KeyString("k00002")])
	// and appends go on after the cut
	require.NoError(t, r.add(sideNew, []spillRecord{rec(t, "more", 0)}, func() {}))
	require.NoError(t, r.checkpoint(func([]int64) {}))
	assert.ElementsMatch(t, append(append([]string(nil), before[:10]...), "more"), readAll(t, r, sideNew))
}

// countBuffered is the records of a side still in buffers (not in the files).
func countBuffered(s *spill, side int) int {
	n := 0
	for f := side * s.buckets; f < (side+1)*s.buckets; f++ {
		b := s.bufs[f]
		for len(b) > 0 {
			l := int(b[0]) | int(b[1])<<8 | int(b[2])<<16 | int(b[3])<<24
			b = b[8+l:]
			n++
		}
	}
	return n
}

// TestSpillLost: a file missing or shorter than the checkpoint says, or sizes for another
// number of buckets, is errSpillLost; a file that was never written (size 0) need not exist.
func TestSpillLost(t *testing.T) {
	setup := func(t *testing.T) (string, []int64) {
		dir := filepath.Join(t.TempDir(), "spill")
		s, err := openSpill(dir, 4, nil)
		require.NoError(t, err)
		require.NoError(t, s.add(sideOld, []spillRecord{rec(t, "a", 0), rec(t, "b", 0), rec(t, "c", 0)}, func() {}))
		var sizes []int64
		require.NoError(t, s.checkpoint(func(sz []int64) { sizes = sz }))
		return dir, sizes
	}
	written := func(sizes []int64) int {
		for i, n := range sizes {
			if n > 0 {
				return i
			}
		}
		return -1
	}
	t.Run("missing file", func(t *testing.T) {
		dir, sizes := setup(t)
		require.NoError(t, os.Remove((&spill{dir: dir, buckets: 4}).file(written(sizes))))
		_, err := openSpill(dir, 4, sizes)
		assert.ErrorIs(t, err, errSpillLost)
	})
	t.Run("shorter file", func(t *testing.T) {
		dir, sizes := setup(t)
		f := written(sizes)
		require.NoError(t, os.Truncate((&spill{dir: dir, buckets: 4}).file(f), sizes[f]-1))
		_, err := openSpill(dir, 4, sizes)
		assert.ErrorIs(t, err, errSpillLost)
		assert.ErrorContains(t, err, "the checkpoint")
	})
	t.Run("directory gone", func(t *testing.T) {
		dir, sizes := setup(t)
		require.NoError(t, os.RemoveAll(dir))
		_, err := openSpill(dir, 4, sizes)
		assert.ErrorIs(t, err, errSpillLost)
	})
	t.Run("other bucket count", func(t *testing.T) {
		dir, sizes := setup(t)
		_, err := openSpill(dir, 8, sizes)
		assert.ErrorIs(t, err, errSpillLost)
	})
	t.Run("unwritten files", func(t *testing.T) {
		dir, sizes := setup(t)
		s, err := openSpill(dir, 4, sizes)
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{"a", "b", "c"}, readAll(t, s, sideOld))
		assert.Empty(t, readAll(t, s, sideNew))
	})
}

// TestSpillDamaged: a changed byte, a cut record or an absurd length is errSpillDamaged,
// naming the file and the offset.
func TestSpillDamaged(t *testing.T) {
	for name, damage := range map[string]func(b []byte) []byte{
		"flipped byte": func(b []byte) []byte { b[len(b)-3] ^= 0x40; return b },
		"cut record":   func(b []byte) []byte { return b[:len(b)-5] },
		"huge length":  func(b []byte) []byte { b[0], b[1], b[2], b[3] = 0xff, 0xff, 0xff, 0x7f; return b },
	} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spill")
			s, err := openSpill(dir, 1, nil)
			require.NoError(t, err)
			require.NoError(t, s.add(sideOld, []spillRecord{rec(t, "a", 0), rec(t, "b", 0)}, func() {}))
			require.NoError(t, s.checkpoint(func([]int64) {}))
			file := s.file(0)
			b, err := os.ReadFile(file)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(file, damage(b), 0o600))
			err = s.read(sideOld, 0, func(spillRecord) error { return nil })
			assert.ErrorIs(t, err, errSpillDamaged)
			assert.ErrorContains(t, err, file)
		})
	}
}

// TestDigestIsEqual: documents transform.Equal holds the same have one digest, and documents
// it holds different have different digests; values the digest cannot stand for are not ok.
func TestDigestIsEqual(t *testing.T) {
	base := bson.D{{Key: "a", Value: int32(1)}, {Key: "b", Value: bson.D{{Key: "x", Value: "s"}, {Key: "y", Value: bson.A{int64(1), 2.5}}}}}
	cases := []struct {
		name string
		a, b bson.D
	}{
		{"same", base, base},
		{"field order", base, bson.D{base[1], base[0]}},
		{"nested field order", base, bson.D{base[0], {Key: "b", Value: bson.D{{Key: "y", Value: bson.A{int64(1), 2.5}}, {Key: "x", Value: "s"}}}}},
		{"int32 and int64", bson.D{{Key: "a", Value: int32(1)}}, bson.D{{Key: "a", Value: int64(1)}}},
		{"array order", bson.D{{Key: "a", Value: bson.A{1.0, 2.0}}}, bson.D{{Key: "a", Value: bson.A{2.0, 1.0}}}},
		{"zero and negative zero", bson.D{{Key: "a", Value: 0.0}}, bson.D{{Key: "a", Value: math.Copysign(0, -1)}}},
		{"a field more", base, append(bson.D{{Key: "c", Value: nil}}, base...)},
		{"null and absent", bson.D{{Key: "a", Value: nil}}, bson.D{}},
		{"string and binary", bson.D{{Key: "a", Value: "ab"}}, bson.D{{Key: "a", Value: bson.Binary{Data: []byte("ab")}}}},
		{"duplicate names, same order", bson.D{{Key: "a", Value: int32(1)}, {Key: "a", Value: int32(2)}}, bson.D{{Key: "a", Value: int32(1)}, {Key: "a", Value: int32(2)}}},
		{"duplicate names, other order", bson.D{{Key: "a", Value: int32(1)}, {Key: "a", Value: int32(2)}}, bson.D{{Key: "a", Value: int32(2)}, {Key: "a", Value: int32(1)}}},
		{"date and timestamp", bson.D{{Key: "a", Value: bson.DateTime(5)}}, bson.D{{Key: "a", Value: bson.Timestamp{T: 0, I: 5}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			da, okA := digest(tc.a)
			db, okB := digest(tc.b)
			require.True(t, okA)
			require.True(t, okB)
			assert.Equal(t, transform.Equal(tc.a, tc.b), da == db, "digests agree with transform.Equal")
		})
	}
	for name, d := range map[string]bson.D{
		"bson.Null":   {{Key: "a", Value: bson.Null{}}},
		"Go int":      {{Key: "a", Value: 1}},
		"map":         {{Key: "a", Value: bson.M{"x": int32(1)}}},
		"nested null": {{Key: "a", Value: bson.A{bson.D{{Key: "b", Value: bson.Null{}}}}}},
		"regex":       {{Key: "a", Value: bson.Regex{Pattern: "x"}}},
	} {
		_, ok := digest(d)
		assert.False(t, ok, name)
	}
	_, ok := digest(bson.D{{Key: "a", Value: nil}})
	assert.True(t, ok, "nil is BSON null as the driver decodes it")
}

func TestBucketOfSpreads(t *testing.T) {
	counts := make([]int, 16)
	for i := range 16000 {
		b := bucketOf(adapters.KeyString(fmt.Sprintf("user-%06d", i)), 16)
		require.True(t, b >= 0 && b < 16)
		counts[b]++
	}
	for b, n := range counts {
		assert.InDelta(t, 1000, n, 200, "bucket %d", b)
	}
}

// TestRecordSize: a record is 29 bytes and the key twice (docs/verify.md gives the size).
func TestRecordSize(t *testing.T) {
	r := rec(t, "user-000001", 0)
	assert.Len(t, appendRecord(nil, &r), 66)
}
