package transform

import (
	"bytes"
	"math"
	"reflect"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Equal reports whether a and b hold the same fields with the same values, ignoring the order
// of fields within documents but not the order of array elements. Types count: int32 1 and
// int64 1 differ, and doubles compare by their bits (NaN equals NaN, 0 and -0 differ). It is
// the equality that reverse(forward(d)) == d promises: Reverse does not always restore field
// order (see "Field order" in the package doc). A document with a repeated field name is
// compared in order.
func Equal(a, b bson.D) bool {
	if len(a) != len(b) {
		return false
	}
	if hasDuplicateKeys(a) || hasDuplicateKeys(b) {
		for i := range a {
			if a[i].Key != b[i].Key || !valueEqual(a[i].Value, b[i].Value) {
				return false
			}
		}
		return true
	}
	for i := range a {
		j := i
		if j >= len(b) || b[j].Key != a[i].Key {
			if j = indexOf(b, a[i].Key); j < 0 {
				return false
			}
		}
		if !valueEqual(a[i].Value, b[j].Value) {
			return false
		}
	}
	return true
}

func hasDuplicateKeys(d bson.D) bool {
	if len(d) < 2 {
		return false
	}
	if len(d) <= 8 {
		for i := range d {
			for j := i + 1; j < len(d); j++ {
				if d[i].Key == d[j].Key {
					return true
				}
			}
		}
		return false
	}
	seen := make(map[string]struct{}, len(d))
	for _, e := range d {
		if _, ok := seen[e.Key]; ok {
			return true
		}
		seen[e.Key] = struct{}{}
	}
	return false
}

func valueEqual(x, y any) bool {
	switch xv := x.(type) {
	case nil:
		return y == nil
	case bson.D:
		yv, ok := y.(bson.D)
		return ok && Equal(xv, yv)
	case bson.A:
		yv, ok := y.(bson.A)
		if !ok || len(xv) != len(yv) {
			return false
		}
		for i := range xv {
			if !valueEqual(xv[i], yv[i]) {
				return false
			}
		}
		return true
	case float64:
		yv, ok := y.(float64)
		return ok && math.Float64bits(xv) == math.Float64bits(yv)
	case bson.Binary:
		yv, ok := y.(bson.Binary)
		return ok && xv.Subtype == yv.Subtype && bytes.Equal(xv.Data, yv.Data)
	case string, int32, int64, bool, bson.DateTime, bson.ObjectID, bson.Decimal128,
		bson.Timestamp, bson.Null, bson.Undefined, bson.MinKey, bson.MaxKey:
		return x == y
	}
	return reflect.DeepEqual(x, y)
}

// deepCopy copies documents and arrays, so that a constant of the spec is never shared with
// a document handed to a caller.
func deepCopy(v any) any {
	switch t := v.(type) {
	case bson.D:
		c := make(bson.D, len(t))
		for i, e := range t {
			c[i] = bson.E{Key: e.Key, Value: deepCopy(e.Value)}
		}
		return c
	case bson.A:
		c := make(bson.A, len(t))
		for i, e := range t {
			c[i] = deepCopy(e)
		}
		return c
	case bson.Binary:
		return bson.Binary{Subtype: t.Subtype, Data: bytes.Clone(t.Data)}
	}
	return v
}

// typeName names a value's BSON type as the convert step spells types, or as MongoDB's $type
// does for the others.
func typeName(v any) string {
	switch v.(type) {
	case nil, bson.Null:
		return "null"
	case string:
		return TypeString
	case int32:
		return TypeInt32
	case int64:
		return TypeInt64
	case float64:
		return TypeDouble
	case bson.Decimal128:
		return TypeDecimal128
	case bool:
		return TypeBool
	case bson.DateTime:
		return TypeDate
	case bson.ObjectID:
		return TypeObjectID
	case bson.D, bson.M, bson.Raw:
		return "object"
	case bson.A:
		return "array"
	case bson.Binary:
		return "binData"
	case bson.Timestamp:
		return "timestamp"
	case bson.Regex:
		return "regex"
	}
	return reflect.TypeOf(v).String()
}
