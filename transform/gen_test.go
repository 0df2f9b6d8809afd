package transform

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Pseudo-random BSON values and documents for the round-trip tests, from a seeded source so
// that a failure reproduces.

// edge values per convert type, tried before random ones.
var edgeValues = map[string][]any{
	TypeInt32: {int32(0), int32(1), int32(-1), int32(math.MaxInt32), int32(math.MinInt32)},
	TypeInt64: {int64(0), int64(-1), int64(math.MaxInt64), int64(math.MinInt64), int64(1<<53 + 1), int64(math.MaxInt32 + 1)},
	TypeDouble: {0.0, math.Copysign(0, -1), math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat64,
		math.SmallestNonzeroFloat64, 0.1, 1e21, 1e-7, 123456789.125, -1.5},
	TypeDecimal128: {mustDecimal("0"), mustDecimal("-0"), mustDecimal("1.000"), mustDecimal("0E-10"),
		mustDecimal("NaN"), mustDecimal("Infinity"), mustDecimal("-Infinity"),
		mustDecimal("9999999999999999999999999999999999E+6111"), mustDecimal("1E-6176"), mustDecimal("-12.50")},
	TypeBool: {true, false},
	TypeDate: {bson.DateTime(0), bson.DateTime(-1), bson.DateTime(253402300799999), bson.DateTime(-62167219200000),
		bson.DateTime(math.MaxInt64), bson.DateTime(math.MinInt64)},
	TypeObjectID: {bson.ObjectID{}, bson.ObjectID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	TypeString:   {"", "0", "héllo", "a.b", "$x"},
}

func mustDecimal(s string) bson.Decimal128 {
	d, err := bson.ParseDecimal128(s)
	if err != nil {
		panic(err)
	}
	return d
}

// randomOf returns a pseudo-random value of a convert type, over its whole range.
func randomOf(r *rand.Rand, typ string) any {
	switch typ {
	case TypeString:
		const alphabet = "abcXYZ019 _-.@é€"
		rs := []rune(alphabet)
		b := make([]rune, r.IntN(12))
		for i := range b {
			b[i] = rs[r.IntN(len(rs))]
		}
		return string(b)
	case TypeInt32:
		return int32(r.Uint32())
	case TypeInt64:
		return int64(r.Uint64()) >> r.IntN(64)
	case TypeDouble:
		switch r.IntN(3) {
		case 0:
			f := math.Float64frombits(r.Uint64())
			if math.IsNaN(f) {
				return math.NaN() // NaN payloads are not kept by any conversion
			}
			return f
		case 1:
			return float64(r.IntN(1_000_000)) / 1000
		default:
			return r.NormFloat64() * math.Pow(10, float64(r.IntN(40)-20))
		}
	case TypeDecimal128:
		coef := new(big.Int).Lsh(new(big.Int).SetUint64(r.Uint64()), 64)
		coef.Or(coef, new(big.Int).SetUint64(r.Uint64()))
		coef.Mod(coef, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(1+r.IntN(34))), nil))
		if r.IntN(2) == 0 {
			coef.Neg(coef)
		}
		exp := r.IntN(60) - 30
		if r.IntN(10) == 0 {
			exp = r.IntN(6111+6176-33) - 6176
		}
		d, ok := bson.ParseDecimal128FromBigInt(coef, exp)
		if !ok {
			panic(fmt.Sprint("decimal ", coef, exp))
		}
		return d
	case TypeBool:
		return r.IntN(2) == 0
	case TypeDate:
		if r.IntN(4) == 0 {
			return bson.DateTime(int64(r.Uint64()))
		}
		return bson.DateTime(r.Int64N(4102444800000) - 2208988800000) // 1900–2100
	case TypeObjectID:
		var id bson.ObjectID
		for i := range id {
			id[i] = byte(r.Uint32())
		}
		return id
	}
	panic("no generator for " + typ)
}

// valuesOf returns the edge values of typ followed by n random ones.
func valuesOf(r *rand.Rand, typ string, n int) []any {
	vs := append([]any(nil), edgeValues[typ]...)
	for range n {
		vs = append(vs, randomOf(r, typ))
	}
	return vs
}

// randomValue returns a value of any kind the package handles: every convert type, null,
// binary, timestamps, and (while depth allows) documents and arrays.
func randomValue(r *rand.Rand, depth int) any {
	n := 12
	if depth > 0 {
		n = 14
	}
	switch k := r.IntN(n); k {
	case 0, 1, 2, 3, 4, 5, 6, 7:
		return randomOf(r, Types[k])
	case 8:
		return nil
	case 9:
		return bson.Binary{Subtype: byte(r.IntN(6)), Data: []byte(randomOf(r, TypeString).(string))}
	case 10:
		return bson.Timestamp{T: r.Uint32(), I: r.Uint32()}
	case 11:
		return bson.Regex{Pattern: "^a", Options: "i"}
	case 12:
		return randomDoc(r, depth-1, "f", 1+r.IntN(4))
	default:
		a := make(bson.A, r.IntN(4))
		for i := range a {
			a[i] = randomValue(r, depth-1)
		}
		return a
	}
}

// randomDoc returns a document of up to n fields named prefix0, prefix1, … (no repeats), never
// empty: an empty embedded document on the way to a rename's destination is the one case that
// does not round-trip (see "Empty documents" in the package doc).
func randomDoc(r *rand.Rand, depth int, prefix string, n int) bson.D {
	d := bson.D{}
	for _, i := range r.Perm(8)[:max(1, min(n, 8))] {
		d = append(d, bson.E{Key: fmt.Sprintf("%s%d", prefix, i), Value: randomValue(r, depth)})
	}
	return d
}
