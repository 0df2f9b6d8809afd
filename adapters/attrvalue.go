package adapters

import (
	"encoding/base64"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// The tags of the BSON types that DynamoDB has no type for. Each is stored as an M whose
// single-"$" keys are exactly one of these sets; user keys that start with "$" are stored with
// one more "$", so no user map is ever read back as a tagged value. See the package doc.
const (
	tagOID     = "$oid"
	tagDate    = "$date"
	tagDecimal = "$numberDecimal"
	tagDouble  = "$numberDouble"
	tagBinary  = "$binary"
	tagSubtype = "$subtype"
)

// DynamoDB's number range (positive magnitudes); doubles outside it are stored as $numberDouble.
const (
	dynamoMinMagnitude = 1e-130
	dynamoMaxMagnitude = 1e126 // exclusive: the largest N is 9.99…9E+125
)

// MarshalItem converts a document to a DynamoDB item by the mapping of the package doc. Field
// names starting with "$" are escaped (one more "$") at every level. Errors wrap
// ErrUnsupportedValue and name the field path (dotted, array indexes as numbers).
func MarshalItem(doc bson.D) (map[string]types.AttributeValue, error) {
	item := make(map[string]types.AttributeValue, len(doc))
	for _, e := range doc {
		if err := putField(item, e.Key, e.Value); err != nil {
			return nil, err
		}
	}
	return item, nil
}

// UnmarshalItem converts a DynamoDB item to a document by the mapping of the package doc. DynamoDB
// keeps no field order: fields come back sorted by name (byte order) at every level.
func UnmarshalItem(item map[string]types.AttributeValue) (bson.D, error) {
	return unmarshalMap(item, true)
}

// MarshalValue converts one BSON value to an AttributeValue by the mapping of the package doc.
func MarshalValue(v any) (types.AttributeValue, error) {
	return marshalValue(v)
}

// UnmarshalValue converts one AttributeValue to a BSON value by the mapping of the package doc.
func UnmarshalValue(av types.AttributeValue) (any, error) {
	return unmarshalValue(av)
}

// pathError is an ErrUnsupportedValue that collects its field path while the recursion unwinds,
// so that the happy path never builds path strings.
type pathError struct {
	rev []string // path segments, innermost first
	msg string
}

func (e *pathError) Error() string {
	if len(e.rev) == 0 {
		return e.msg + ": " + ErrUnsupportedValue.Error()
	}
	segs := slices.Clone(e.rev)
	slices.Reverse(segs)
	return fmt.Sprintf("field %q: %s", strings.Join(segs, "."), e.msg)
}

func (e *pathError) Unwrap() error { return ErrUnsupportedValue }

func valueErr(format string, args ...any) error {
	return &pathError{msg: fmt.Sprintf(format, args...)}
}

// inField adds one path segment to err, if err is a pathError.
func inField(err error, seg string) error {
	if pe, ok := err.(*pathError); ok {
		pe.rev = append(pe.rev, seg)
	}
	return err
}

func putField(m map[string]types.AttributeValue, name string, v any) error {
	if name == "" {
		return valueErr("empty field name")
	}
	key := escapeName(name)
	if _, dup := m[key]; dup {
		return inField(valueErr("duplicate field name"), name)
	}
	av, err := marshalValue(v)
	if err != nil {
		return inField(err, name)
	}
	m[key] = av
	return nil
}

// escapeName stores a user field name that starts with "$" with one more "$".
func escapeName(name string) string {
	if strings.HasPrefix(name, "$") {
		return "$" + name
	}
	return name
}

func marshalValue(v any) (types.AttributeValue, error) {
	switch x := v.(type) {
	case nil, bson.Null:
		return &types.AttributeValueMemberNULL{Value: true}, nil
	case string:
		return &types.AttributeValueMemberS{Value: x}, nil
	case bool:
		return &types.AttributeValueMemberBOOL{Value: x}, nil
	case int32:
		return intN(int64(x)), nil
	case int64:
		return intN(x), nil
	case int:
		return intN(int64(x)), nil
	case int8:
		return intN(int64(x)), nil
	case int16:
		return intN(int64(x)), nil
	case uint8:
		return intN(int64(x)), nil
	case uint16:
		return intN(int64(x)), nil
	case uint32:
		return intN(int64(x)), nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return nil, valueErr("unsigned integer %d beyond int64", x)
		}
		return intN(int64(x)), nil
	case uint64:
		if x > math.MaxInt64 {
			return nil, valueErr("unsigned integer %d beyond int64", x)
		}
		return intN(int64(x)), nil
	case float64:
		return doubleAV(x), nil
	case float32:
		return doubleAV(float64(x)), nil
	case bson.D:
		m := make(map[string]types.AttributeValue, len(x))
		for _, e := range x {
			if err := putField(m, e.Key, e.Value); err != nil {
				return nil, err
			}
		}
		return &types.AttributeValueMemberM{Value: m}, nil
	case bson.M:
		return marshalGoMap(x)
	case map[string]any:
		return marshalGoMap(x)
	case bson.A:
		return marshalList(x)
	case []any:
		return marshalList(x)
	case []byte:
		return &types.AttributeValueMemberB{Value: x}, nil
	case bson.Binary:
		if x.Subtype == 0 {
			return &types.AttributeValueMemberB{Value: x.Data}, nil
		}
		return tagged2(tagBinary, &types.AttributeValueMemberB{Value: x.Data},
			tagSubtype, intN(int64(x.Subtype))), nil
	case bson.Decimal128:
		return tagged(tagDecimal, &types.AttributeValueMemberS{Value: x.String()}), nil
	case bson.ObjectID:
		return tagged(tagOID, &types.AttributeValueMemberS{Value: x.Hex()}), nil
	case bson.DateTime:
		return tagged(tagDate, intN(int64(x))), nil
	case time.Time:
		return tagged(tagDate, intN(int64(bson.NewDateTimeFromTime(x)))), nil
	default:
		return nil, valueErr("%s has no DynamoDB representation", bsonTypeName(v))
	}
}

func marshalGoMap(x map[string]any) (types.AttributeValue, error) {
	// Visit in name order so that the first error reported does not depend on map iteration.
	names := make([]string, 0, len(x))
	for k := range x {
		names = append(names, k)
	}
	slices.Sort(names)
	m := make(map[string]types.AttributeValue, len(x))
	for _, k := range names {
		if err := putField(m, k, x[k]); err != nil {
			return nil, err
		}
	}
	return &types.AttributeValueMemberM{Value: m}, nil
}

func marshalList(x []any) (types.AttributeValue, error) {
	l := make([]types.AttributeValue, len(x))
	for i, e := range x {
		av, err := marshalValue(e)
		if err != nil {
			return nil, inField(err, strconv.Itoa(i))
		}
		l[i] = av
	}
	return &types.AttributeValueMemberL{Value: l}, nil
}

func bsonTypeName(v any) string {
	switch v.(type) {
	case bson.Regex:
		return "a regular expression"
	case bson.Timestamp:
		return "a timestamp"
	case bson.MinKey:
		return "minKey"
	case bson.MaxKey:
		return "maxKey"
	case bson.JavaScript:
		return "JavaScript code"
	case bson.CodeWithScope:
		return "JavaScript code with scope"
	case bson.Symbol:
		return "a symbol"
	case bson.DBPointer:
		return "a DBPointer"
	case bson.Undefined:
		return "undefined"
	default:
		return fmt.Sprintf("a Go %T", v)
	}
}

func intN(i int64) types.AttributeValue {
	return &types.AttributeValueMemberN{Value: strconv.FormatInt(i, 10)}
}

// doubleAV stores a double as N: an integral one below 2^63 by its exact integer digits, any
// other by the shortest plain decimal digits that read back as the same double (at most 17
// significant digits, within DynamoDB's 38); or as $numberDouble when N cannot hold it: NaN, ±Inf, -0 and magnitudes
// outside DynamoDB's number range.
func doubleAV(f float64) types.AttributeValue {
	abs := math.Abs(f)
	if math.IsNaN(f) || math.IsInf(f, 0) || (f == 0 && math.Signbit(f)) ||
		(f != 0 && (abs < dynamoMinMagnitude || abs >= dynamoMaxMagnitude)) {
		return tagged(tagDouble, &types.AttributeValueMemberS{Value: formatDoubleTag(f)})
	}
	if f == math.Trunc(f) && abs < 1<<63 {
		// Exact digits: the shortest ones of 6.555818746412595e17 end in …500, while its value,
		// and so the int64 it reads back as, ends in …520.
		return intN(int64(f))
	}
	return &types.AttributeValueMemberN{Value: strconv.FormatFloat(f, 'f', -1, 64)}
}

func formatDoubleTag(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0 && math.Signbit(f):
		return "-0"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func tagged(tag string, v types.AttributeValue) types.AttributeValue {
	return &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{tag: v}}
}

func tagged2(tag1 string, v1 types.AttributeValue, tag2 string, v2 types.AttributeValue) types.AttributeValue {
	return &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{tag1: v1, tag2: v2}}
}

// unmarshalMap decodes an M (or an item, when top is set) into a bson.D sorted by field name.
// Below the top level, a map with single-"$" keys is a tagged value; at the top level such
// names, which this package never writes, are kept as they are.
func unmarshalMap(m map[string]types.AttributeValue, top bool) (bson.D, error) {
	d := make(bson.D, 0, len(m))
	for k, av := range m {
		name := k
		if strings.HasPrefix(k, "$$") {
			name = k[1:]
		} else if strings.HasPrefix(k, "$") && !top {
			return nil, valueErr("map mixes the reserved key %q with other keys", k)
		}
		v, err := unmarshalValue(av)
		if err != nil {
			return nil, inField(err, name)
		}
		d = append(d, bson.E{Key: name, Value: v})
	}
	slices.SortFunc(d, func(a, b bson.E) int { return strings.Compare(a.Key, b.Key) })
	return d, nil
}

func unmarshalValue(av types.AttributeValue) (any, error) {
	switch x := av.(type) {
	case *types.AttributeValueMemberS:
		return x.Value, nil
	case *types.AttributeValueMemberN:
		return parseNumber(x.Value)
	case *types.AttributeValueMemberB:
		return bson.Binary{Subtype: 0, Data: x.Value}, nil
	case *types.AttributeValueMemberBOOL:
		return x.Value, nil
	case *types.AttributeValueMemberNULL:
		return nil, nil
	case *types.AttributeValueMemberM:
		if v, ok, err := unmarshalTagged(x.Value); ok || err != nil {
			return v, err
		}
		return unmarshalMap(x.Value, false)
	case *types.AttributeValueMemberL:
		a := make(bson.A, len(x.Value))
		for i, e := range x.Value {
			v, err := unmarshalValue(e)
			if err != nil {
				return nil, inField(err, strconv.Itoa(i))
			}
			a[i] = v
		}
		return a, nil
	case *types.AttributeValueMemberSS:
		a := make(bson.A, len(x.Value))
		for i, s := range x.Value {
			a[i] = s
		}
		return a, nil
	case *types.AttributeValueMemberNS:
		a := make(bson.A, len(x.Value))
		for i, s := range x.Value {
			n, err := parseNumber(s)
			if err != nil {
				return nil, inField(err, strconv.Itoa(i))
			}
			a[i] = n
		}
		return a, nil
	case *types.AttributeValueMemberBS:
		a := make(bson.A, len(x.Value))
		for i, b := range x.Value {
			a[i] = bson.Binary{Subtype: 0, Data: b}
		}
		return a, nil
	default:
		return nil, valueErr("unknown DynamoDB attribute value %T", av)
	}
}

// unmarshalTagged decodes an M whose keys are one of the tag sets. ok is false for a map with no
// single-"$" key (a plain document); a map with such keys that is not exactly a tag set with
// values of the right types is an error.
func unmarshalTagged(m map[string]types.AttributeValue) (v any, ok bool, err error) {
	reserved := 0
	for k := range m {
		if strings.HasPrefix(k, "$") && !strings.HasPrefix(k, "$$") {
			reserved++
		}
	}
	if reserved == 0 {
		return nil, false, nil
	}
	bad := func(what string) (any, bool, error) {
		return nil, true, valueErr("malformed tagged value (%s)", what)
	}
	if reserved != len(m) {
		return bad("reserved keys mixed with other keys")
	}
	switch len(m) {
	case 1:
		for k, av := range m {
			switch k {
			case tagOID:
				s, isS := av.(*types.AttributeValueMemberS)
				if !isS {
					return bad("$oid is not a string")
				}
				oid, err := bson.ObjectIDFromHex(s.Value)
				if err != nil {
					return bad("$oid " + strconv.Quote(s.Value))
				}
				return oid, true, nil
			case tagDate:
				n, isN := av.(*types.AttributeValueMemberN)
				if !isN {
					return bad("$date is not a number")
				}
				ms, err := strconv.ParseInt(n.Value, 10, 64)
				if err != nil {
					return bad("$date " + strconv.Quote(n.Value))
				}
				return bson.DateTime(ms), true, nil
			case tagDecimal:
				s, isS := av.(*types.AttributeValueMemberS)
				if !isS {
					return bad("$numberDecimal is not a string")
				}
				d, err := bson.ParseDecimal128(s.Value)
				if err != nil {
					return bad("$numberDecimal " + strconv.Quote(s.Value))
				}
				return d, true, nil
			case tagDouble:
				s, isS := av.(*types.AttributeValueMemberS)
				if !isS {
					return bad("$numberDouble is not a string")
				}
				f, err := strconv.ParseFloat(s.Value, 64)
				if err != nil {
					return bad("$numberDouble " + strconv.Quote(s.Value))
				}
				return f, true, nil
			}
			return bad("unknown tag " + strconv.Quote(k))
		}
	case 2:
		b, isB := m[tagBinary].(*types.AttributeValueMemberB)
		st, isN := m[tagSubtype].(*types.AttributeValueMemberN)
		if !isB || !isN {
			return bad("expected $binary (B) and $subtype (N)")
		}
		sub, err := strconv.ParseUint(st.Value, 10, 8)
		if err != nil {
			return bad("$subtype " + strconv.Quote(st.Value))
		}
		return bson.Binary{Subtype: byte(sub), Data: b.Value}, true, nil
	}
	return bad(fmt.Sprintf("%d reserved keys", len(m)))
}

// parseNumber reads an N: an integral value that fits int32 becomes int32, else int64 if it fits,
// else a double; a fractional value becomes the nearest double.
func parseNumber(s string) (any, error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		if i >= math.MinInt32 && i <= math.MaxInt32 {
			return int32(i), nil
		}
		return i, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return nil, valueErr("number %q", s)
	}
	if f != math.Trunc(f) {
		// A non-integral double never comes from an integral decimal.
		return f, nil
	}
	// Integral as a double, but "5.000000000000000001" is not an integer: decide exactly.
	r, ok := new(big.Rat).SetString(s)
	if !ok || !r.IsInt() {
		return f, nil
	}
	if n := r.Num(); n.IsInt64() {
		i := n.Int64()
		if i >= math.MinInt32 && i <= math.MaxInt32 {
			return int32(i), nil
		}
		return i, nil
	}
	return f, nil
}

// numberSize is the size DynamoDB counts for an N: one byte per two significant digits, plus one
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html).
func numberSize(s string) int {
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimLeft(s, "+-")
	s = strings.Replace(s, ".", "", 1)
	s = strings.TrimLeft(s, "0")
	s = strings.TrimRight(s, "0")
	digits := max(len(s), 1)
	return (digits+1)/2 + 1
}

// attrSize is the size DynamoDB counts for a value, without its name: strings and binaries by
// their bytes, numbers by numberSize, null and bool 1 byte, lists and maps 3 bytes plus 1 byte
// per element plus their elements (map elements with their names).
func attrSize(av types.AttributeValue) int {
	switch x := av.(type) {
	case *types.AttributeValueMemberS:
		return len(x.Value)
	case *types.AttributeValueMemberN:
		return numberSize(x.Value)
	case *types.AttributeValueMemberB:
		return len(x.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberM:
		n := 3
		for k, v := range x.Value {
			n += len(k) + attrSize(v) + 1
		}
		return n
	case *types.AttributeValueMemberL:
		n := 3
		for _, v := range x.Value {
			n += attrSize(v) + 1
		}
		return n
	case *types.AttributeValueMemberSS:
		n := 0
		for _, s := range x.Value {
			n += len(s)
		}
		return n
	case *types.AttributeValueMemberNS:
		n := 0
		for _, s := range x.Value {
			n += numberSize(s)
		}
		return n
	case *types.AttributeValueMemberBS:
		n := 0
		for _, b := range x.Value {
			n += len(b)
		}
		return n
	}
	return 0
}

// ItemSize is the size DynamoDB counts against its 400 KB item limit: the UTF-8 bytes of every
// attribute name plus the size of its value by DynamoDB's rules.
func ItemSize(item map[string]types.AttributeValue) int {
	n := 0
	for k, v := range item {
		n += len(k) + attrSize(v)
	}
	return n
}

// keyCanon renders a key attribute value so that values DynamoDB treats as one key are equal:
// numbers compare by value ("5" and "5.0" are one key).
func keyCanon(av types.AttributeValue) string {
	switch x := av.(type) {
	case *types.AttributeValueMemberS:
		return "S" + x.Value
	case *types.AttributeValueMemberN:
		if r, ok := new(big.Rat).SetString(x.Value); ok {
			return "N" + r.RatString()
		}
		return "N" + x.Value
	case *types.AttributeValueMemberB:
		return "B" + base64.StdEncoding.EncodeToString(x.Value)
	}
	return fmt.Sprintf("?%v", av)
}
