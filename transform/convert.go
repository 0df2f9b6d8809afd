package transform

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The type names of convert's from and to.
const (
	TypeString     = "string"
	TypeInt32      = "int32"
	TypeInt64      = "int64"
	TypeDouble     = "double"
	TypeDecimal128 = "decimal128"
	TypeBool       = "bool"
	TypeDate       = "date"
	TypeObjectID   = "objectId"
)

// Types lists the type names convert accepts, in the order the docs list them.
var Types = []string{TypeString, TypeInt32, TypeInt64, TypeDouble, TypeDecimal128, TypeBool, TypeDate, TypeObjectID}

// The on_error policies of convert.
const (
	OnErrorFail    = "fail"
	OnErrorNull    = "null"
	OnErrorKeep    = "keep"
	OnErrorDrop    = "drop"
	OnErrorDefault = "default"
)

// onErrorPolicies lists the policies in the order messages name them.
var onErrorPolicies = []string{OnErrorFail, OnErrorNull, OnErrorKeep, OnErrorDrop, OnErrorDefault}

// dateLayout is how a date is written as a string: RFC 3339 with milliseconds, in UTC.
const dateLayout = "2006-01-02T15:04:05.000Z07:00"

// converters holds every supported pair, keyed from → to. Each converter is exact: it returns
// an error rather than round, truncate or wrap.
var converters = map[string]map[string]func(any) (any, error){
	TypeString: {
		TypeInt32:      func(v any) (any, error) { return parseInt(v.(string), 32) },
		TypeInt64:      func(v any) (any, error) { return parseInt(v.(string), 64) },
		TypeDouble:     func(v any) (any, error) { return exactFloat(v.(string)) },
		TypeDecimal128: func(v any) (any, error) { return bson.ParseDecimal128(v.(string)) },
		TypeBool:       func(v any) (any, error) { return parseBool(v.(string)) },
		TypeDate:       func(v any) (any, error) { return parseDate(v.(string)) },
		TypeObjectID:   func(v any) (any, error) { return bson.ObjectIDFromHex(v.(string)) },
	},
	TypeInt32: {
		TypeString:     func(v any) (any, error) { return strconv.FormatInt(int64(v.(int32)), 10), nil },
		TypeInt64:      func(v any) (any, error) { return int64(v.(int32)), nil },
		TypeDouble:     func(v any) (any, error) { return float64(v.(int32)), nil },
		TypeDecimal128: func(v any) (any, error) { return intDecimal(int64(v.(int32))), nil },
		TypeBool:       func(v any) (any, error) { return intBool(int64(v.(int32))) },
	},
	TypeInt64: {
		TypeString:     func(v any) (any, error) { return strconv.FormatInt(v.(int64), 10), nil },
		TypeInt32:      func(v any) (any, error) { return int64To32(v.(int64)) },
		TypeDouble:     func(v any) (any, error) { return int64Float(v.(int64)) },
		TypeDecimal128: func(v any) (any, error) { return intDecimal(v.(int64)), nil },
		TypeBool:       func(v any) (any, error) { return intBool(v.(int64)) },
		TypeDate:       func(v any) (any, error) { return bson.DateTime(v.(int64)), nil },
	},
	TypeDouble: {
		TypeString:     func(v any) (any, error) { return strconv.FormatFloat(v.(float64), 'g', -1, 64), nil },
		TypeInt32:      func(v any) (any, error) { return floatInt(v.(float64), 32) },
		TypeInt64:      func(v any) (any, error) { return floatInt(v.(float64), 64) },
		TypeDecimal128: func(v any) (any, error) { return floatDecimal(v.(float64)) },
	},
	TypeDecimal128: {
		TypeString: func(v any) (any, error) { return v.(bson.Decimal128).String(), nil },
		TypeInt32:  func(v any) (any, error) { return decimalInt(v.(bson.Decimal128), 32) },
		TypeInt64:  func(v any) (any, error) { return decimalInt(v.(bson.Decimal128), 64) },
		TypeDouble: func(v any) (any, error) { return exactFloat(v.(bson.Decimal128).String()) },
	},
	TypeBool: {
		TypeString: func(v any) (any, error) { return strconv.FormatBool(v.(bool)), nil },
		TypeInt32:  func(v any) (any, error) { return int32(boolInt(v.(bool))), nil },
		TypeInt64:  func(v any) (any, error) { return boolInt(v.(bool)), nil },
	},
	TypeDate: {
		TypeString: func(v any) (any, error) { return formatDate(v.(bson.DateTime)) },
		TypeInt64:  func(v any) (any, error) { return int64(v.(bson.DateTime)), nil },
	},
	TypeObjectID: {
		TypeString: func(v any) (any, error) { return v.(bson.ObjectID).Hex(), nil },
	},
}

// lossless lists the pairs whose reverse conversion gives back every value the forward one
// accepts; only these make a convert step reversible.
var lossless = map[[2]string]bool{
	{TypeInt32, TypeInt64}:       true,
	{TypeInt32, TypeDouble}:      true,
	{TypeInt32, TypeString}:      true,
	{TypeInt32, TypeDecimal128}:  true,
	{TypeInt64, TypeString}:      true,
	{TypeInt64, TypeDecimal128}:  true,
	{TypeDouble, TypeString}:     true,
	{TypeDecimal128, TypeString}: true,
	{TypeObjectID, TypeString}:   true,
	{TypeBool, TypeString}:       true,
	{TypeDate, TypeInt64}:        true,
	{TypeDate, TypeString}:       true,
}

// canConvert reports whether from → to is a supported pair.
func canConvert(from, to string) bool {
	_, ok := converters[from][to]
	return ok
}

// isLossless reports whether from → to may be reversed by to → from.
func isLossless(from, to string) bool { return lossless[[2]string{from, to}] }

// convertValue converts v to type to. With from set, v must be of that type. Null and values
// already of type to (with from unset) are returned unchanged.
func convertValue(v any, from, to string) (any, error) {
	if v == nil {
		return nil, nil
	}
	have := typeName(v)
	if from != "" && have != from {
		return nil, fmt.Errorf("%w: value is %s, want %s", ErrConvert, have, from)
	}
	if have == to {
		return v, nil
	}
	fn, ok := converters[have][to]
	if !ok {
		return nil, fmt.Errorf("%w: cannot convert %s to %s", ErrConvert, have, to)
	}
	out, err := fn(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %s to %s: %v", ErrConvert, have, shortValue(v), to, err)
	}
	return out, nil
}

// shortValue renders a value for an error message, cut to 40 bytes.
func shortValue(v any) string {
	s := fmt.Sprintf("%v", v)
	if str, ok := v.(string); ok {
		s = strconv.Quote(str)
	}
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

func parseInt(s string, bits int) (any, error) {
	n, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		return nil, fmt.Errorf("not an integer in range")
	}
	if bits == 32 {
		return int32(n), nil
	}
	return n, nil
}

func parseBool(s string) (any, error) {
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return nil, fmt.Errorf("want true or false")
}

// parseDate accepts RFC 3339 with at most millisecond precision (a date holds milliseconds).
func parseDate(s string) (any, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, fmt.Errorf("not an RFC 3339 date")
	}
	if t.Nanosecond()%int(time.Millisecond) != 0 {
		return nil, fmt.Errorf("finer than milliseconds")
	}
	return bson.NewDateTimeFromTime(t), nil
}

// formatDate fails outside years 0–9999, which RFC 3339 cannot write.
func formatDate(d bson.DateTime) (any, error) {
	t := d.Time().UTC()
	if t.Year() < 0 || t.Year() > 9999 {
		return nil, fmt.Errorf("year %d outside RFC 3339", t.Year())
	}
	return t.Format(dateLayout), nil
}

// exactFloat parses a decimal number into the double whose shortest decimal form has the same
// value: "0.1" succeeds (0.1 is how that double is written), "0.30000000000000001" fails, since
// the double nearest it is written "0.3". NaN and ±Infinity pass.
func exactFloat(s string) (any, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, fmt.Errorf("not a double in range")
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return f, nil
	}
	want, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, fmt.Errorf("not a decimal number")
	}
	got, _ := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
	if want.Cmp(got) != 0 {
		return nil, fmt.Errorf("not exactly representable as a double")
	}
	return f, nil
}

func intDecimal(n int64) bson.Decimal128 {
	d, _ := bson.ParseDecimal128FromBigInt(big.NewInt(n), 0)
	return d
}

func intBool(n int64) (any, error) {
	switch n {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return nil, fmt.Errorf("only 0 and 1 are booleans")
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func int64To32(n int64) (any, error) {
	if n < math.MinInt32 || n > math.MaxInt32 {
		return nil, fmt.Errorf("out of int32 range")
	}
	return int32(n), nil
}

func int64Float(n int64) (any, error) {
	f := float64(n)
	if f >= math.MaxInt64 || int64(f) != n { // float64(MaxInt64) rounds up to 2^63
		return nil, fmt.Errorf("not exactly representable as a double")
	}
	return f, nil
}

func floatInt(f float64, bits int) (any, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) {
		return nil, fmt.Errorf("not an integer")
	}
	if bits == 32 {
		if f < math.MinInt32 || f > math.MaxInt32 {
			return nil, fmt.Errorf("out of int32 range")
		}
		return int32(f), nil
	}
	if f < math.MinInt64 || f >= math.MaxInt64 { // -2^63 is exact; 2^63 is not an int64
		return nil, fmt.Errorf("out of int64 range")
	}
	return int64(f), nil
}

// floatDecimal writes the double's shortest decimal form (the one double → string uses).
func floatDecimal(f float64) (any, error) {
	return bson.ParseDecimal128(strconv.FormatFloat(f, 'g', -1, 64))
}

func decimalInt(d bson.Decimal128, bits int) (any, error) {
	coef, exp, err := d.BigInt()
	if err != nil {
		return nil, fmt.Errorf("not a finite number")
	}
	if coef.Sign() != 0 {
		if exp > 0 {
			if exp > 40 {
				return nil, fmt.Errorf("out of int%d range", bits)
			}
			coef.Mul(coef, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(exp)), nil))
		} else if exp < 0 {
			if exp < -40 {
				return nil, fmt.Errorf("not an integer")
			}
			var rem big.Int
			coef.QuoRem(coef, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-exp)), nil), &rem)
			if rem.Sign() != 0 {
				return nil, fmt.Errorf("not an integer")
			}
		}
	}
	if !coef.IsInt64() {
		return nil, fmt.Errorf("out of int%d range", bits)
	}
	if bits == 32 {
		return int64To32(coef.Int64())
	}
	return coef.Int64(), nil
}
