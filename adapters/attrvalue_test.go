package adapters

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

type (
	avS    = types.AttributeValueMemberS
	avN    = types.AttributeValueMemberN
	avB    = types.AttributeValueMemberB
	avBOOL = types.AttributeValueMemberBOOL
	avNULL = types.AttributeValueMemberNULL
	avM    = types.AttributeValueMemberM
	avL    = types.AttributeValueMemberL
)

type avMap = map[string]types.AttributeValue

func TestMappingOfEveryType(t *testing.T) {
	oid, _ := bson.ObjectIDFromHex("65a1b2c3d4e5f60718293a4b")
	dec := mustDecimal("-12.50")
	when := time.Date(2024, 5, 6, 7, 8, 9, 123_000_000, time.UTC)
	tests := []struct {
		name string
		in   any
		av   types.AttributeValue
		out  any // what reading av gives: the documented normalization of in
	}{
		{"string", "héllo", &avS{Value: "héllo"}, "héllo"},
		{"empty string", "", &avS{Value: ""}, ""},
		{"true", true, &avBOOL{Value: true}, true},
		{"false", false, &avBOOL{Value: false}, false},
		{"null", nil, &avNULL{Value: true}, nil},
		{"bson.Null", bson.Null{}, &avNULL{Value: true}, nil},
		{"int32", int32(-7), &avN{Value: "-7"}, int32(-7)},
		{"int64 that fits int32", int64(7), &avN{Value: "7"}, int32(7)},
		{"int64", int64(1) << 40, &avN{Value: "1099511627776"}, int64(1) << 40},
		{"int64 max", int64(math.MaxInt64), &avN{Value: "9223372036854775807"}, int64(math.MaxInt64)},
		{"int64 min", int64(math.MinInt64), &avN{Value: "-9223372036854775808"}, int64(math.MinInt64)},
		{"Go int", 5, &avN{Value: "5"}, int32(5)},
		{"uint8", uint8(200), &avN{Value: "200"}, int32(200)},
		{"integral double", 4.0, &avN{Value: "4"}, int32(4)},
		{"big integral double", 1e18, &avN{Value: "1000000000000000000"}, int64(1e18)},
		{"integral double beyond int64", 1e20, &avN{Value: "100000000000000000000"}, 1e20},
		{"fractional double", 2.5, &avN{Value: "2.5"}, 2.5},
		{"shortest digits", 0.1, &avN{Value: "0.1"}, 0.1},
		{"small double", 1.5e-7, &avN{Value: "0.00000015"}, 1.5e-7},
		{"float32", float32(0.5), &avN{Value: "0.5"}, 0.5},
		{"NaN", math.NaN(), &avM{Value: avMap{"$numberDouble": &avS{Value: "NaN"}}}, math.NaN()},
		{"+Inf", math.Inf(1), &avM{Value: avMap{"$numberDouble": &avS{Value: "Infinity"}}}, math.Inf(1)},
		{"-Inf", math.Inf(-1), &avM{Value: avMap{"$numberDouble": &avS{Value: "-Infinity"}}}, math.Inf(-1)},
		{"-0", math.Copysign(0, -1), &avM{Value: avMap{"$numberDouble": &avS{Value: "-0"}}}, math.Copysign(0, -1)},
		{"over DynamoDB's range", 1e300, &avM{Value: avMap{"$numberDouble": &avS{Value: "1e+300"}}}, 1e300},
		{"under DynamoDB's range", 5e-324, &avM{Value: avMap{"$numberDouble": &avS{Value: "5e-324"}}}, 5e-324},
		{"decimal128", dec, &avM{Value: avMap{"$numberDecimal": &avS{Value: "-12.50"}}}, dec},
		{"objectId", oid, &avM{Value: avMap{"$oid": &avS{Value: "65a1b2c3d4e5f60718293a4b"}}}, oid},
		{"date", bson.DateTime(-5), &avM{Value: avMap{"$date": &avN{Value: "-5"}}}, bson.DateTime(-5)},
		{"time.Time", when, &avM{Value: avMap{"$date": &avN{Value: strconv.FormatInt(when.UnixMilli(), 10)}}}, bson.NewDateTimeFromTime(when)},
		{"binary subtype 0", bson.Binary{Data: []byte{1, 2}}, &avB{Value: []byte{1, 2}}, bson.Binary{Data: []byte{1, 2}}},
		{"[]byte", []byte{3}, &avB{Value: []byte{3}}, bson.Binary{Data: []byte{3}}},
		{"binary subtype 4", bson.Binary{Subtype: 4, Data: []byte{9}},
			&avM{Value: avMap{"$binary": &avB{Value: []byte{9}}, "$subtype": &avN{Value: "4"}}},
			bson.Binary{Subtype: 4, Data: []byte{9}}},
		{"binary subtype 0x80", bson.Binary{Subtype: 0x80, Data: nil},
			&avM{Value: avMap{"$binary": &avB{Value: nil}, "$subtype": &avN{Value: "128"}}},
			bson.Binary{Subtype: 0x80, Data: nil}},
		{"document", bson.D{{Key: "b", Value: int32(1)}, {Key: "a", Value: "x"}},
			&avM{Value: avMap{"b": &avN{Value: "1"}, "a": &avS{Value: "x"}}},
			bson.D{{Key: "a", Value: "x"}, {Key: "b", Value: int32(1)}}},
		{"empty document", bson.D{}, &avM{Value: avMap{}}, bson.D{}},
		{"bson.M", bson.M{"k": true}, &avM{Value: avMap{"k": &avBOOL{Value: true}}}, bson.D{{Key: "k", Value: true}}},
		{"array", bson.A{"x", int64(2), bson.A{}}, &avL{Value: []types.AttributeValue{&avS{Value: "x"}, &avN{Value: "2"}, &avL{Value: []types.AttributeValue{}}}},
			bson.A{"x", int32(2), bson.A{}}},
		{"[]any", []any{nil}, &avL{Value: []types.AttributeValue{&avNULL{Value: true}}}, bson.A{nil}},
		{"user keys starting with $", bson.D{{Key: "$oid", Value: "x"}, {Key: "$", Value: int32(1)}, {Key: "$$y", Value: int32(2)}},
			&avM{Value: avMap{"$$oid": &avS{Value: "x"}, "$$": &avN{Value: "1"}, "$$$y": &avN{Value: "2"}}},
			bson.D{{Key: "$", Value: int32(1)}, {Key: "$$y", Value: int32(2)}, {Key: "$oid", Value: "x"}}},
		{"a user map shaped like $binary", bson.D{{Key: "$binary", Value: []byte{1}}, {Key: "$subtype", Value: int32(4)}},
			&avM{Value: avMap{"$$binary": &avB{Value: []byte{1}}, "$$subtype": &avN{Value: "4"}}},
			bson.D{{Key: "$binary", Value: bson.Binary{Data: []byte{1}}}, {Key: "$subtype", Value: int32(4)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			av, err := MarshalValue(tc.in)
			require.NoError(t, err)
			assert.Equal(t, tc.av, av)
			back, err := UnmarshalValue(av)
			require.NoError(t, err)
			assertSameValue(t, tc.out, back)
			// Reading is stable: writing the value read gives the same AttributeValue.
			again, err := MarshalValue(back)
			require.NoError(t, err)
			assert.Equal(t, tc.av, again)
		})
	}
}

// assertSameValue compares two BSON values by their canonical Extended JSON, which keeps types
// and renders NaN comparably.
func assertSameValue(t *testing.T, want, got any) {
	t.Helper()
	assertSameDoc(t, bson.D{{Key: "v", Value: want}}, bson.D{{Key: "v", Value: got}})
}

func TestItemRoundTripAndOrder(t *testing.T) {
	doc := bson.D{
		{Key: "z", Value: int32(1)},
		{Key: "_id", Value: "k"},
		{Key: "$top", Value: "escaped at the top too"},
		{Key: "m", Value: bson.D{{Key: "y", Value: bson.A{bson.D{{Key: "b", Value: 1.5}, {Key: "a", Value: nil}}}}, {Key: "x", Value: false}}},
	}
	item, err := MarshalItem(doc)
	require.NoError(t, err)
	assert.Contains(t, item, "$$top")
	got, err := UnmarshalItem(item)
	require.NoError(t, err)
	want := bson.D{
		{Key: "$top", Value: "escaped at the top too"},
		{Key: "_id", Value: "k"},
		{Key: "m", Value: bson.D{{Key: "x", Value: false}, {Key: "y", Value: bson.A{bson.D{{Key: "a", Value: nil}, {Key: "b", Value: 1.5}}}}}},
		{Key: "z", Value: int32(1)},
	}
	assertSameDoc(t, want, got)
}

func TestUnsupportedValuesNameTheirPath(t *testing.T) {
	tests := []struct {
		name string
		doc  bson.D
		path string
		what string
	}{
		{"regex", bson.D{{Key: "r", Value: bson.Regex{Pattern: "a"}}}, `"r"`, "regular expression"},
		{"timestamp deep", bson.D{{Key: "a", Value: bson.D{{Key: "b", Value: bson.A{int32(0), bson.Timestamp{T: 1}}}}}}, `"a.b.1"`, "timestamp"},
		{"minKey", bson.D{{Key: "m", Value: bson.MinKey{}}}, `"m"`, "minKey"},
		{"maxKey", bson.D{{Key: "m", Value: bson.MaxKey{}}}, `"m"`, "maxKey"},
		{"javascript", bson.D{{Key: "js", Value: bson.JavaScript("1")}}, `"js"`, "JavaScript"},
		{"code with scope", bson.D{{Key: "js", Value: bson.CodeWithScope{Code: "1"}}}, `"js"`, "JavaScript"},
		{"symbol", bson.D{{Key: "s", Value: bson.Symbol("x")}}, `"s"`, "symbol"},
		{"undefined", bson.D{{Key: "u", Value: bson.Undefined{}}}, `"u"`, "undefined"},
		{"dbpointer", bson.D{{Key: "p", Value: bson.DBPointer{DB: "x"}}}, `"p"`, "DBPointer"},
		{"Go struct", bson.D{{Key: "g", Value: struct{}{}}}, `"g"`, "struct"},
		{"uint64 beyond int64", bson.D{{Key: "u", Value: uint64(math.MaxUint64)}}, `"u"`, "beyond int64"},
		{"duplicate field", bson.D{{Key: "a", Value: bson.D{{Key: "x", Value: 1}, {Key: "x", Value: 2}}}}, `"a.x"`, "duplicate"},
		{"empty field name", bson.D{{Key: "a", Value: bson.A{bson.D{{Key: "", Value: 1}}}}}, `"a.0"`, "empty field name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := MarshalItem(tc.doc)
			require.ErrorIs(t, err, ErrUnsupportedValue)
			assert.Contains(t, err.Error(), "field "+tc.path)
			assert.Contains(t, err.Error(), tc.what)
		})
	}
}

func TestMalformedTaggedValuesAreErrors(t *testing.T) {
	tests := map[string]types.AttributeValue{
		"unknown tag":       &avM{Value: avMap{"$foo": &avS{Value: "x"}}},
		"tag with user key": &avM{Value: avMap{"$oid": &avS{Value: "65a1b2c3d4e5f60718293a4b"}, "a": &avS{}}},
		"bad oid":           &avM{Value: avMap{"$oid": &avS{Value: "zz"}}},
		"oid not S":         &avM{Value: avMap{"$oid": &avN{Value: "1"}}},
		"date not N":        &avM{Value: avMap{"$date": &avS{Value: "1"}}},
		"fractional date":   &avM{Value: avMap{"$date": &avN{Value: "1.5"}}},
		"bad decimal":       &avM{Value: avMap{"$numberDecimal": &avS{Value: "x"}}},
		"bad double":        &avM{Value: avMap{"$numberDouble": &avS{Value: "x"}}},
		"binary no subtype": &avM{Value: avMap{"$binary": &avB{}, "$x": &avN{Value: "1"}}},
		"subtype too big":   &avM{Value: avMap{"$binary": &avB{}, "$subtype": &avN{Value: "256"}}},
		"bad number":        &avN{Value: "12abc"},
		"nested":            &avL{Value: []types.AttributeValue{&avM{Value: avMap{"a": &avM{Value: avMap{"$oid": &avS{Value: ""}}}}}}},
	}
	for name, av := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := UnmarshalValue(av)
			assert.ErrorIs(t, err, ErrUnsupportedValue)
		})
	}
	_, err := UnmarshalItem(avMap{"x": tests["nested"]})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `field "x.0.a"`)
}

func TestReadingForeignValues(t *testing.T) {
	// Values that this package never writes but other writers of a table may.
	tests := []struct {
		name string
		av   types.AttributeValue
		want any
	}{
		{"string set", &types.AttributeValueMemberSS{Value: []string{"a", "b"}}, bson.A{"a", "b"}},
		{"number set", &types.AttributeValueMemberNS{Value: []string{"1", "2.5", "1e3"}}, bson.A{int32(1), 2.5, int32(1000)}},
		{"binary set", &types.AttributeValueMemberBS{Value: [][]byte{{1}}}, bson.A{bson.Binary{Data: []byte{1}}}},
		{"exponent", &avN{Value: "1.5E+10"}, int64(15_000_000_000)},
		{"trailing zeros", &avN{Value: "5.000"}, int32(5)},
		{"almost integral", &avN{Value: "5.0000000000000000000001"}, 5.0},
		{"integer beyond int64", &avN{Value: "123456789012345678901234567890"}, 1.2345678901234568e29},
		{"negative fraction", &avN{Value: "-0.125"}, -0.125},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := UnmarshalValue(tc.av)
			require.NoError(t, err)
			assertSameValue(t, tc.want, got)
		})
	}
	// A top-level attribute with a single "$", never written by this package, is kept as is.
	d, err := UnmarshalItem(avMap{"$x": &avS{Value: "v"}})
	require.NoError(t, err)
	assert.Equal(t, bson.D{{Key: "$x", Value: "v"}}, d)
}

func TestItemSize(t *testing.T) {
	// The rules of https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
	tests := []struct {
		name string
		item avMap
		want int
	}{
		{"string", avMap{"ab": &avS{Value: "héllo"}}, 2 + 6},
		{"number", avMap{"n": &avN{Value: "123"}}, 1 + 2 + 1},
		{"number zeros trimmed", avMap{"n": &avN{Value: "-0.0012000"}}, 1 + 1 + 1},
		{"number 38 digits", avMap{"n": &avN{Value: strings.Repeat("9", 38)}}, 1 + 19 + 1},
		{"zero", avMap{"n": &avN{Value: "0"}}, 1 + 1 + 1},
		{"binary", avMap{"b": &avB{Value: make([]byte, 10)}}, 1 + 10},
		{"bool and null", avMap{"t": &avBOOL{}, "nul": &avNULL{Value: true}}, 1 + 1 + 3 + 1},
		{"empty map", avMap{"m": &avM{Value: avMap{}}}, 1 + 3},
		{"map", avMap{"m": &avM{Value: avMap{"k": &avS{Value: "vv"}}}}, 1 + 3 + (1 + 2 + 1)},
		{"list", avMap{"l": &avL{Value: []types.AttributeValue{&avS{Value: "ab"}, &avNULL{Value: true}}}}, 1 + 3 + (2 + 1) + (1 + 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, ItemSize(tc.item))
		})
	}
}

// TestNormalizationProperty generates documents of every supported type and checks, for each,
// that reading the item of a document gives its documented normalization (computed here
// independently of the mapping code), and that writing and reading that again changes nothing.
func TestNormalizationProperty(t *testing.T) {
	seeds := 500
	if testing.Short() {
		seeds = 50
	}
	for seed := range seeds {
		r := rand.New(rand.NewPCG(uint64(seed), 42))
		doc := genDoc(r, 0)
		item, err := MarshalItem(doc)
		require.NoError(t, err, "seed %d: %v", seed, doc)
		got, err := UnmarshalItem(item)
		require.NoError(t, err, "seed %d", seed)
		want := expectNormalized(doc).(bson.D)
		if !assert.Equal(t, extJSON(t, want), extJSON(t, got), "seed %d: read differs from the documented normalization", seed) {
			continue
		}
		item2, err := MarshalItem(got)
		require.NoError(t, err)
		got2, err := UnmarshalItem(item2)
		require.NoError(t, err)
		assert.Equal(t, extJSON(t, got), extJSON(t, got2), "seed %d: normalization is not stable", seed)
		assert.Equal(t, ItemSize(item), ItemSize(item2), "seed %d: size changed", seed)
	}
}

// FuzzNormalization runs the property on documents generated from fuzzed seeds.
func FuzzNormalization(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		doc := genDoc(rand.New(rand.NewPCG(a, b)), 0)
		item, err := MarshalItem(doc)
		require.NoError(t, err)
		got, err := UnmarshalItem(item)
		require.NoError(t, err)
		assert.Equal(t, extJSON(t, expectNormalized(doc).(bson.D)), extJSON(t, got))
	})
}

var fieldNames = []string{"a", "b", "_id", "$oid", "$date", "$binary", "$subtype", "$numberDouble", "$numberDecimal", "$", "$$", "$$a", "é", "x.y", " "}

func genDoc(r *rand.Rand, depth int) bson.D {
	n := r.IntN(6)
	d := bson.D{}
	used := map[string]bool{}
	for range n {
		name := fieldNames[r.IntN(len(fieldNames))]
		if used[name] {
			continue
		}
		used[name] = true
		d = append(d, bson.E{Key: name, Value: genValue(r, depth)})
	}
	return d
}

func genValue(r *rand.Rand, depth int) any {
	kinds := 18
	if depth >= 3 {
		kinds = 15 // no more nesting
	}
	switch r.IntN(kinds) {
	case 0:
		return fmt.Sprintf("s%d", r.IntN(100))
	case 1:
		return r.IntN(2) == 0
	case 2:
		return nil
	case 3:
		return int32(r.Uint32())
	case 4:
		return int64(r.Uint64())
	case 5:
		return int64(r.IntN(1000) - 500)
	case 6:
		return float64(r.IntN(1000)) // integral
	case 7:
		return r.NormFloat64() * math.Pow(10, float64(r.IntN(40)-20))
	case 8:
		return []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), 0, 1e300, -1e-300, 5e-324, math.MaxFloat64, 1e125, 1e126, 1e-130, 9e-131}[r.IntN(13)]
	case 9:
		var b [12]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return bson.ObjectID(b)
	case 10:
		return bson.DateTime(int64(r.Uint64()) >> 20)
	case 11:
		d, _ := bson.ParseDecimal128(fmt.Sprintf("%d.%03d", r.IntN(1e6)-5e5, r.IntN(1000)))
		return d
	case 12:
		return bson.Binary{Subtype: []byte{0, 0, 3, 4, 5, 0x80}[r.IntN(6)], Data: []byte(fmt.Sprint(r.IntN(1000)))}
	case 13:
		return []byte{byte(r.Uint32())}
	case 14:
		return r.IntN(1 << 40) // Go int
	case 15, 16:
		return genDoc(r, depth+1)
	default:
		a := bson.A{}
		for range r.IntN(4) {
			a = append(a, genValue(r, depth+1))
		}
		return a
	}
}

// expectNormalized is the documented normalization, written independently of the mapping:
// fields sorted by name at every level; integral numbers that fit int32 become int32, else int64,
// else double; NaN, ±Inf, -0 and doubles outside DynamoDB's range stay doubles; []byte becomes a
// binary of subtype 0; everything else is kept.
func expectNormalized(v any) any {
	switch x := v.(type) {
	case bson.D:
		d := make(bson.D, len(x))
		for i, e := range x {
			d[i] = bson.E{Key: e.Key, Value: expectNormalized(e.Value)}
		}
		slices.SortFunc(d, func(a, b bson.E) int { return strings.Compare(a.Key, b.Key) })
		return d
	case bson.A:
		a := make(bson.A, len(x))
		for i, e := range x {
			a[i] = expectNormalized(e)
		}
		return a
	case int:
		return expectNormalized(int64(x))
	case int32:
		return x
	case int64:
		if x >= math.MinInt32 && x <= math.MaxInt32 {
			return int32(x)
		}
		return x
	case float64:
		abs := math.Abs(x)
		if math.IsNaN(x) || math.IsInf(x, 0) || math.Signbit(x) && x == 0 || x != 0 && (abs < 1e-130 || abs >= 1e126) {
			return x
		}
		if x == math.Trunc(x) && abs < 1<<63 {
			return expectNormalized(int64(x))
		}
		return x
	case []byte:
		return bson.Binary{Data: x}
	}
	return v
}
