package verify

import (
	"cmp"
	"crypto/sha256"
	"hash/fnv"
	"slices"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// digestSize is the bytes of a document digest kept in a spill record.
const digestSize = 16

// digest is a hash of a document that is equal for two documents transform.Equal holds
// equal: the BSON of the document with the fields of every embedded document sorted by name
// (Equal ignores field order, except in a document with a field name twice, which is kept as
// it is), hashed with SHA-256 and cut to 128 bits. ok is false for a document holding a value
// whose BSON does not say everything Equal compares (bson.Null{} encodes as nil does, a Go
// int as an int32 or int64, a map in any order): such a document is compared in full.
func digest(d bson.D) (sum [digestSize]byte, ok bool) {
	c, ok := canonDoc(d)
	if !ok {
		return sum, false
	}
	b, err := bson.Marshal(c)
	if err != nil {
		return sum, false
	}
	full := sha256.Sum256(b)
	copy(sum[:], full[:])
	return sum, true
}

func canonDoc(d bson.D) (bson.D, bool) {
	out := make(bson.D, len(d))
	for i, e := range d {
		v, ok := canonValue(e.Value)
		if !ok {
			return nil, false
		}
		out[i] = bson.E{Key: e.Key, Value: v}
	}
	sorted := slices.IsSortedFunc(out, func(a, b bson.E) int { return cmp.Compare(a.Key, b.Key) })
	if !sorted {
		dup := false
		seen := make(map[string]struct{}, len(out))
		for _, e := range out {
			if _, ok := seen[e.Key]; ok {
				dup = true
				break
			}
			seen[e.Key] = struct{}{}
		}
		if !dup {
			slices.SortFunc(out, func(a, b bson.E) int { return cmp.Compare(a.Key, b.Key) })
		}
	}
	return out, true
}

func canonValue(v any) (any, bool) {
	switch t := v.(type) {
	case bson.D:
		return canonDoc(t)
	case bson.A:
		out := make(bson.A, len(t))
		for i, e := range t {
			c, ok := canonValue(e)
			if !ok {
				return nil, false
			}
			out[i] = c
		}
		return out, true
	case nil, string, int32, int64, float64, bool, bson.DateTime, bson.ObjectID, bson.Decimal128,
		bson.Timestamp, bson.Binary, bson.MinKey, bson.MaxKey:
		return v, true // nil is BSON null as the driver decodes it; bson.Null{} (alike in BSON) is not
	}
	return nil, false // bson.Null{}, Go ints, maps, the rarer BSON types: compared in full
}

// bucketOf is the spill bucket of a key (by its KeyString).
func bucketOf(ks string, buckets int) int {
	h := fnv.New64a()
	_, _ = h.Write([]byte(ks))
	return int(h.Sum64() % uint64(buckets))
}
