package transform

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func date(s string) bson.DateTime {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return bson.NewDateTimeFromTime(t)
}

var testOID = bson.ObjectID{0x65, 0x1f, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a}

// convertCases covers every supported pair with at least one success (checked by
// TestConvertCoversEveryPair) and the ways each can fail. want is ignored when fail is set.
var convertCases = []struct {
	in   any
	to   string
	want any
	fail bool
}{
	{"42", TypeInt32, int32(42), false},
	{"-2147483648", TypeInt32, int32(math.MinInt32), false},
	{"2147483648", TypeInt32, nil, true},
	{"abc", TypeInt32, nil, true},
	{"1.0", TypeInt32, nil, true},
	{" 1", TypeInt32, nil, true},
	{"9223372036854775807", TypeInt64, int64(math.MaxInt64), false},
	{"9223372036854775808", TypeInt64, nil, true},
	{"0x10", TypeInt64, nil, true},
	{"0.1", TypeDouble, 0.1, false},
	{"-0", TypeDouble, math.Copysign(0, -1), false},
	{"1e21", TypeDouble, 1e21, false},
	{"NaN", TypeDouble, math.NaN(), false},
	{"-Inf", TypeDouble, math.Inf(-1), false},
	{"1e400", TypeDouble, nil, true},
	{"0.30000000000000001", TypeDouble, nil, true},
	{"x", TypeDouble, nil, true},
	{"12.50", TypeDecimal128, mustDecimal("12.50"), false},
	{"1234567890123456789012345678901234567", TypeDecimal128, nil, true},
	{"abc", TypeDecimal128, nil, true},
	{"true", TypeBool, true, false},
	{"false", TypeBool, false, false},
	{"TRUE", TypeBool, nil, true},
	{"1", TypeBool, nil, true},
	{"2024-05-06T07:08:09.123Z", TypeDate, date("2024-05-06T07:08:09.123Z"), false},
	{"2024-05-06T09:08:09.123+02:00", TypeDate, date("2024-05-06T07:08:09.123Z"), false},
	{"2024-05-06T07:08:09Z", TypeDate, date("2024-05-06T07:08:09Z"), false},
	{"2024-05-06T07:08:09.1234Z", TypeDate, nil, true},
	{"2024-05-06", TypeDate, nil, true},
	{"651f0102030405060708090a", TypeObjectID, testOID, false},
	{"651F0102030405060708090A", TypeObjectID, testOID, false},
	{"651f01020304050607080", TypeObjectID, nil, true},
	{"zz1f0102030405060708090a", TypeObjectID, nil, true},

	{int32(-7), TypeString, "-7", false},
	{int32(-7), TypeInt64, int64(-7), false},
	{int32(math.MaxInt32), TypeDouble, float64(math.MaxInt32), false},
	{int32(-7), TypeDecimal128, mustDecimal("-7"), false},
	{int32(0), TypeBool, false, false},
	{int32(1), TypeBool, true, false},
	{int32(2), TypeBool, nil, true},
	{int32(7), TypeDate, nil, true},
	{int32(7), TypeObjectID, nil, true},

	{int64(math.MinInt64), TypeString, "-9223372036854775808", false},
	{int64(math.MaxInt32), TypeInt32, int32(math.MaxInt32), false},
	{int64(math.MaxInt32 + 1), TypeInt32, nil, true},
	{int64(math.MinInt32 - 1), TypeInt32, nil, true},
	{int64(1 << 53), TypeDouble, float64(1 << 53), false},
	{int64(1<<53 + 1), TypeDouble, nil, true},
	{int64(math.MaxInt64), TypeDouble, nil, true},
	{int64(math.MinInt64), TypeDouble, float64(math.MinInt64), false},
	{int64(math.MaxInt64), TypeDecimal128, mustDecimal("9223372036854775807"), false},
	{int64(1), TypeBool, true, false},
	{int64(-1), TypeBool, nil, true},
	{int64(1715000000123), TypeDate, bson.DateTime(1715000000123), false},

	{1.5, TypeString, "1.5", false},
	{0.1, TypeString, "0.1", false},
	{1e21, TypeString, "1e+21", false},
	{math.Copysign(0, -1), TypeString, "-0", false},
	{math.NaN(), TypeString, "NaN", false},
	{math.Inf(1), TypeString, "+Inf", false},
	{3.0, TypeInt32, int32(3), false},
	{-2147483648.0, TypeInt32, int32(math.MinInt32), false},
	{1.5, TypeInt32, nil, true},
	{2147483648.0, TypeInt32, nil, true},
	{math.NaN(), TypeInt32, nil, true},
	{math.Inf(1), TypeInt64, nil, true},
	{math.Ldexp(1, 62), TypeInt64, int64(1 << 62), false},
	{math.Ldexp(1, 63), TypeInt64, nil, true},
	{math.Ldexp(-1, 63), TypeInt64, int64(math.MinInt64), false},
	{0.1, TypeDecimal128, mustDecimal("0.1"), false},
	{1e300, TypeDecimal128, mustDecimal("1E+300"), false},
	{1.0, TypeBool, nil, true},

	{mustDecimal("12.50"), TypeString, "12.50", false},
	{mustDecimal("1E+3"), TypeString, "1E+3", false},
	{mustDecimal("12.00"), TypeInt32, int32(12), false},
	{mustDecimal("1E+3"), TypeInt32, int32(1000), false},
	{mustDecimal("12.5"), TypeInt32, nil, true},
	{mustDecimal("3E+9"), TypeInt32, nil, true},
	{mustDecimal("3E+9"), TypeInt64, int64(3e9), false},
	{mustDecimal("1E+40"), TypeInt64, nil, true},
	{mustDecimal("1E-40"), TypeInt64, nil, true},
	{mustDecimal("-0E+5"), TypeInt64, int64(0), false},
	{mustDecimal("NaN"), TypeInt64, nil, true},
	{mustDecimal("0.1"), TypeDouble, 0.1, false},
	{mustDecimal("-Infinity"), TypeDouble, math.Inf(-1), false},
	{mustDecimal("0.30000000000000001"), TypeDouble, nil, true},
	{mustDecimal("1E+400"), TypeDouble, nil, true},
	{mustDecimal("1"), TypeBool, nil, true},

	{true, TypeString, "true", false},
	{false, TypeInt32, int32(0), false},
	{true, TypeInt64, int64(1), false},
	{true, TypeDouble, nil, true},

	{date("2024-05-06T07:08:09.123Z"), TypeString, "2024-05-06T07:08:09.123Z", false},
	{date("2024-05-06T07:08:09Z"), TypeString, "2024-05-06T07:08:09.000Z", false},
	{bson.DateTime(253402300800000), TypeString, nil, true}, // year 10000
	{bson.DateTime(-62167219200001), TypeString, nil, true}, // year -1
	{bson.DateTime(-1), TypeInt64, int64(-1), false},
	{bson.DateTime(0), TypeInt32, nil, true},

	{testOID, TypeString, "651f0102030405060708090a", false},
	{testOID, TypeDate, nil, true},

	{bson.D{}, TypeString, nil, true},
	{bson.A{}, TypeString, nil, true},
	{bson.Binary{}, TypeString, nil, true},
}

func TestConvertValue(t *testing.T) {
	for _, tc := range convertCases {
		t.Run(fmt.Sprintf("%s %v to %s", typeName(tc.in), tc.in, tc.to), func(t *testing.T) {
			got, err := convertValue(tc.in, "", tc.to)
			if tc.fail {
				require.ErrorIs(t, err, ErrConvert)
				assert.Contains(t, err.Error(), " to "+tc.to)
				return
			}
			require.NoError(t, err)
			assert.True(t, valueEqual(tc.want, got), "got %T %v, want %T %v", got, got, tc.want, tc.want)
		})
	}
}

func TestConvertCoversEveryPair(t *testing.T) {
	covered := map[[2]string]bool{}
	for _, tc := range convertCases {
		if !tc.fail {
			covered[[2]string{typeName(tc.in), tc.to}] = true
		}
	}
	for from, tos := range converters {
		for to := range tos {
			assert.True(t, covered[[2]string{from, to}], "no successful case for %s -> %s", from, to)
		}
	}
}

func TestConvertPassThrough(t *testing.T) {
	cases := []struct {
		name     string
		in       any
		from, to string
		want     any
		err      bool
	}{
		{"null stays null", nil, TypeInt32, TypeInt64, nil, false},
		{"same type without from", "x", "", TypeString, "x", false},
		{"same type with from is a mismatch", "x", TypeInt32, TypeString, nil, true},
		{"from mismatch", int64(1), TypeInt32, TypeString, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := convertValue(tc.in, tc.from, tc.to)
			if tc.err {
				assert.ErrorIs(t, err, ErrConvert)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

// The lossless pairs are exactly the ones the package doc lists.
func TestLosslessPairs(t *testing.T) {
	want := [][2]string{
		{TypeInt32, TypeInt64}, {TypeInt32, TypeDouble}, {TypeInt32, TypeString}, {TypeInt32, TypeDecimal128},
		{TypeInt64, TypeString}, {TypeInt64, TypeDecimal128}, {TypeDouble, TypeString}, {TypeDecimal128, TypeString},
		{TypeObjectID, TypeString}, {TypeBool, TypeString}, {TypeDate, TypeInt64}, {TypeDate, TypeString},
	}
	var got [][2]string
	for p := range lossless {
		got = append(got, p)
	}
	assert.ElementsMatch(t, want, got)
	for _, p := range want {
		assert.True(t, canConvert(p[1], p[0]), "%s -> %s has no way back", p[1], p[0])
	}
}

// Every lossless pair really round-trips: to and back gives the same bits, over edge values
// and thousands of pseudo-random ones. Only date -> string may refuse a value (years outside
// 0-9999); a conversion that refuses never needs undoing.
func TestLosslessRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pairs := make([][2]string, 0, len(lossless))
	for p := range lossless {
		pairs = append(pairs, p)
	}
	slices.SortFunc(pairs, func(a, b [2]string) int { return compareStrings(a[0]+a[1], b[0]+b[1]) })
	for _, p := range pairs {
		from, to := p[0], p[1]
		t.Run(from+" to "+to, func(t *testing.T) {
			ok := 0
			for _, v := range valuesOf(r, from, 3000) {
				mid, err := convertValue(v, from, to)
				if err != nil {
					require.Equal(t, [2]string{TypeDate, TypeString}, p, "%s %v: %v", from, v, err)
					continue
				}
				back, err := convertValue(mid, to, from)
				require.NoError(t, err, "%s %v -> %v", from, v, mid)
				require.True(t, valueEqual(v, back), "%s %v -> %s %v -> %v", from, v, to, mid, back)
				ok++
			}
			assert.Greater(t, ok, 2000)
		})
	}
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Lossy pairs lose something on the way back, which is why they make a step irreversible.
func TestLossyPairsDoNotRoundTrip(t *testing.T) {
	cases := []struct {
		v        any
		from, to string
	}{
		{"007", TypeString, TypeInt32},
		{"651F0102030405060708090A", TypeString, TypeObjectID},
		{math.Copysign(0, -1), TypeDouble, TypeInt64},
		{mustDecimal("1.0"), TypeDecimal128, TypeInt32},
		{mustDecimal("0.1000"), TypeDecimal128, TypeDouble},
	}
	for _, tc := range cases {
		t.Run(tc.from+" to "+tc.to, func(t *testing.T) {
			assert.False(t, isLossless(tc.from, tc.to))
			mid, err := convertValue(tc.v, tc.from, tc.to)
			require.NoError(t, err)
			back, err := convertValue(mid, tc.to, tc.from)
			require.NoError(t, err)
			assert.False(t, valueEqual(tc.v, back), "%v came back", tc.v)
		})
	}
}

// An unquoted `on_error: null` is YAML's null value; it must still select the null policy
// rather than silently falling back to fail.
func TestUnquotedOnErrorNullMeansNullPolicy(t *testing.T) {
	for _, v := range []string{"null", `"null"`, "Null"} {
		spec, err := Parse("s.yaml", []byte(`name: s
source: {mongodb: {uri: "mongodb://x/", database: d, collection: a}}
target: {mongodb: {uri: "mongodb://x/", database: d, collection: b}}
forward:
  - convert: {path: age, from: int32, to: int64, on_error: `+v+`}
reverse: []
`))
		require.NoError(t, err, v)
		out, err := spec.Forward(bson.D{{Key: "_id", Value: "k"}, {Key: "age", Value: "thirty"}})
		require.NoError(t, err, v)
		assert.Equal(t, bson.D{{Key: "_id", Value: "k"}, {Key: "age", Value: nil}}, out, v)
	}
}
