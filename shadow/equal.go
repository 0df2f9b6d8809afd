package shadow

import (
	"bytes"
	"slices"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Equal reports whether two documents hold the same fields with the same values and BSON
// types, in any field order (MongoDB moves _id to the front; DynamoDB keeps no order). Array
// order matters.
func Equal(a, b bson.D) bool {
	ca, err := canonical(a)
	if err != nil {
		return false
	}
	cb, err := canonical(b)
	if err != nil {
		return false
	}
	return bytes.Equal(ca, cb)
}

// canonical encodes a document with the fields of every nested document sorted by name.
func canonical(d bson.D) ([]byte, error) {
	return bson.Marshal(sortDoc(d))
}

func sortDoc(d bson.D) bson.D {
	out := make(bson.D, len(d))
	for i, e := range d {
		out[i] = bson.E{Key: e.Key, Value: sortValue(e.Value)}
	}
	slices.SortFunc(out, func(x, y bson.E) int { return strings.Compare(x.Key, y.Key) })
	return out
}

func sortValue(v any) any {
	switch t := v.(type) {
	case bson.D:
		return sortDoc(t)
	case bson.A:
		out := make(bson.A, len(t))
		for i, x := range t {
			out[i] = sortValue(x)
		}
		return out
	case bson.M:
		d := make(bson.D, 0, len(t))
		for k, x := range t {
			d = append(d, bson.E{Key: k, Value: x})
		}
		return sortDoc(d)
	default:
		return v
	}
}
