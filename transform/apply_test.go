package transform

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

type goldenCase struct {
	name string
	step string // one step as a YAML flow mapping
	in   bson.D
	want bson.D
	err  error // sentinel the error must wrap; want is ignored when set
}

// runGolden applies each case's step with Forward and checks the exact output (field order
// included) and that the input is untouched.
func runGolden(t *testing.T, cases []goldenCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := oneStep(t, tc.step)
			before := deepCopy(tc.in).(bson.D)
			got, err := spec.Forward(tc.in)
			assert.Equal(t, before, tc.in, "Forward modified its input")
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				var se *StepError
				require.ErrorAs(t, err, &se)
				assert.Equal(t, "forward", se.Direction)
				assert.Equal(t, 0, se.Step)
				assert.Nil(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestRename(t *testing.T) {
	runGolden(t, []goldenCase{
		{"same document keeps position", `rename: {from: a, to: c}`,
			D("_id", 1, "a", 1, "b", 2), D("_id", 1, "c", 1, "b", 2), nil},
		{"into new nested documents", `rename: {from: a, to: p.q.a}`,
			D("_id", 1, "a", 1, "b", 2), D("_id", 1, "b", 2, "p", D("q", D("a", 1))), nil},
		{"into existing document goes last", `rename: {from: a, to: p.a}`,
			D("_id", 1, "a", 1, "p", D("x", 1), "z", 0), D("_id", 1, "p", D("x", 1, "a", 1), "z", 0), nil},
		{"out of nested prunes emptied document", `rename: {from: p.q.a, to: a}`,
			D("_id", 1, "p", D("q", D("a", 1)), "b", 2), D("_id", 1, "b", 2, "a", 1), nil},
		{"out of nested keeps non-empty document", `rename: {from: p.a, to: a}`,
			D("_id", 1, "p", D("a", 1, "b", 2)), D("_id", 1, "p", D("b", 2), "a", 1), nil},
		{"prunes only the emptied level", `rename: {from: p.q.a, to: a}`,
			D("_id", 1, "p", D("q", D("a", 1), "r", 3)), D("_id", 1, "p", D("r", 3), "a", 1), nil},
		{"within a nested document keeps position", `rename: {from: p.a, to: p.c}`,
			D("_id", 1, "p", D("a", 1, "b", 2)), D("_id", 1, "p", D("c", 1, "b", 2)), nil},
		{"moves documents and arrays whole", `rename: {from: a, to: b}`,
			D("_id", 1, "a", D("x", A(1, D("y", 2)))), D("_id", 1, "b", D("x", A(1, D("y", 2)))), nil},
		{"missing field is a no-op", `rename: {from: a, to: b}`,
			D("_id", 1, "x", 1), D("_id", 1, "x", 1), nil},
		{"missing intermediate is a no-op", `rename: {from: p.a, to: b}`,
			D("_id", 1, "x", 1), D("_id", 1, "x", 1), nil},
		{"intermediate that is not a document is a no-op", `rename: {from: p.a, to: b}`,
			D("_id", 1, "p", A(D("a", 1))), D("_id", 1, "p", A(D("a", 1))), nil},
		{"null value moves", `rename: {from: a, to: b}`,
			D("_id", 1, "a", nil), D("_id", 1, "b", nil), nil},
		{"existing destination fails", `rename: {from: a, to: b}`,
			D("_id", 1, "a", 1, "b", 2), nil, ErrPathConflict},
		{"destination through a scalar fails", `rename: {from: a, to: b.c}`,
			D("_id", 1, "a", 1, "b", 2), nil, ErrPathConflict},
		{"move is rename", `move: {from: a, to: p.a}`,
			D("_id", 1, "a", 1), D("_id", 1, "p", D("a", 1)), nil},
	})
}

func TestDrop(t *testing.T) {
	runGolden(t, []goldenCase{
		{"top level", `drop: {path: a}`, D("_id", 1, "a", 1, "b", 2), D("_id", 1, "b", 2), nil},
		{"nested keeps siblings", `drop: {path: p.a}`, D("_id", 1, "p", D("a", 1, "b", 2)), D("_id", 1, "p", D("b", 2)), nil},
		{"nested prunes emptied documents", `drop: {path: p.q.a}`, D("_id", 1, "p", D("q", D("a", 1)), "z", 1), D("_id", 1, "z", 1), nil},
		{"missing is a no-op", `drop: {path: p.a}`, D("_id", 1, "p", D("b", 2)), D("_id", 1, "p", D("b", 2)), nil},
		{"whole document", `drop: {path: p}`, D("_id", 1, "p", D("b", 2)), D("_id", 1), nil},
		{"through an array is a no-op", `drop: {path: p.a}`, D("_id", 1, "p", A(1)), D("_id", 1, "p", A(1)), nil},
	})
}

func TestSet(t *testing.T) {
	runGolden(t, []goldenCase{
		{"new field goes last", `set: {path: v, value: 2}`, D("_id", 1, "a", 1), D("_id", 1, "a", 1, "v", 2), nil},
		{"existing field keeps position", `set: {path: a, value: x}`, D("_id", 1, "a", 1, "b", 2), D("_id", 1, "a", "x", "b", 2), nil},
		{"creates nested documents", `set: {path: p.q.v, value: true}`, D("_id", 1), D("_id", 1, "p", D("q", D("v", true))), nil},
		{"into existing nested document", `set: {path: p.v, value: 1}`, D("_id", 1, "p", D("a", 1)), D("_id", 1, "p", D("a", 1, "v", 1)), nil},
		{"int64 when int32 overflows", `set: {path: v, value: 3000000000}`, D("_id", 1), D("_id", 1, "v", int64(3000000000)), nil},
		{"negative int32 bound", `set: {path: v, value: -2147483648}`, D("_id", 1), D("_id", 1, "v", int32(math.MinInt32)), nil},
		{"double", `set: {path: v, value: 1.5}`, D("_id", 1), D("_id", 1, "v", 1.5), nil},
		{"null", `set: {path: v, value: null}`, D("_id", 1), D("_id", 1, "v", nil), nil},
		{"quoted number is a string", `set: {path: v, value: "2"}`, D("_id", 1), D("_id", 1, "v", "2"), nil},
		{"timestamp-like text is a string", `set: {path: v, value: 2024-01-01}`, D("_id", 1), D("_id", 1, "v", "2024-01-01"), nil},
		{"list", `set: {path: v, value: [1, a, [true]]}`, D("_id", 1), D("_id", 1, "v", A(1, "a", A(true))), nil},
		{"map in YAML order", `set: {path: v, value: {z: 1, a: {b: 2}}}`, D("_id", 1), D("_id", 1, "v", D("z", 1, "a", D("b", 2))), nil},
		{"through a scalar fails", `set: {path: a.v, value: 1}`, D("_id", 1, "a", 1), nil, ErrPathConflict},
		{"through an array fails", `set: {path: a.v, value: 1}`, D("_id", 1, "a", A()), nil, ErrPathConflict},
	})
}

func TestDefault(t *testing.T) {
	runGolden(t, []goldenCase{
		{"absent is filled", `default: {path: s, value: active}`, D("_id", 1), D("_id", 1, "s", "active"), nil},
		{"present is kept", `default: {path: s, value: active}`, D("_id", 1, "s", "gone"), D("_id", 1, "s", "gone"), nil},
		{"null counts as present", `default: {path: s, value: active}`, D("_id", 1, "s", nil), D("_id", 1, "s", nil), nil},
		{"nested absent is filled", `default: {path: p.s, value: 0}`, D("_id", 1, "p", D("a", 1)), D("_id", 1, "p", D("a", 1, "s", 0)), nil},
	})
}

func TestConvertStep(t *testing.T) {
	runGolden(t, []goldenCase{
		{"converts in place", `convert: {path: a, from: int32, to: int64}`, D("_id", 1, "a", 7, "b", 1), D("_id", 1, "a", int64(7), "b", 1), nil},
		{"nested", `convert: {path: p.a, to: string}`, D("_id", 1, "p", D("a", 7)), D("_id", 1, "p", D("a", "7")), nil},
		{"missing is a no-op", `convert: {path: a, from: int32, to: int64}`, D("_id", 1), D("_id", 1), nil},
		{"null is kept", `convert: {path: a, from: int32, to: int64}`, D("_id", 1, "a", nil), D("_id", 1, "a", nil), nil},
		{"without from, same type is a no-op", `convert: {path: a, to: int64}`, D("_id", 1, "a", int64(3)), D("_id", 1, "a", int64(3)), nil},
		{"without from, any supported type", `convert: {path: a, to: int64}`, D("_id", 1, "a", "12"), D("_id", 1, "a", int64(12)), nil},
		{"from mismatch fails", `convert: {path: a, from: int32, to: int64}`, D("_id", 1, "a", "7"), nil, ErrConvert},
		{"unsupported pair at run time fails", `convert: {path: a, to: objectId}`, D("_id", 1, "a", 7), nil, ErrConvert},
		{"document value fails", `convert: {path: a, to: string}`, D("_id", 1, "a", D()), nil, ErrConvert},
		{"inexact fails", `convert: {path: a, from: double, to: int32}`, D("_id", 1, "a", 1.5), nil, ErrConvert},
		{"explicit fail", `convert: {path: a, from: string, to: int32, on_error: fail}`, D("_id", 1, "a", "abc"), nil, ErrConvert},
		{"on_error null", `convert: {path: a, from: string, to: int32, on_error: "null"}`, D("_id", 1, "a", "abc", "b", 1), D("_id", 1, "a", nil, "b", 1), nil},
		{"on_error keep", `convert: {path: a, from: string, to: int32, on_error: keep}`, D("_id", 1, "a", "abc"), D("_id", 1, "a", "abc"), nil},
		{"on_error drop", `convert: {path: a, from: string, to: int32, on_error: drop}`, D("_id", 1, "a", "abc", "b", 1), D("_id", 1, "b", 1), nil},
		{"on_error drop prunes", `convert: {path: p.a, to: int32, on_error: drop}`, D("_id", 1, "p", D("a", "abc")), D("_id", 1), nil},
		{"on_error default", `convert: {path: a, from: string, to: int32, on_error: default, default: -1}`, D("_id", 1, "a", "abc"), D("_id", 1, "a", -1), nil},
		{"on_error default with a document", `convert: {path: a, to: int32, on_error: default, default: {bad: true}}`, D("_id", 1, "a", "x"), D("_id", 1, "a", D("bad", true)), nil},
		{"policy is unused on success", `convert: {path: a, from: string, to: int32, on_error: drop}`, D("_id", 1, "a", "5"), D("_id", 1, "a", 5), nil},
		{"policy covers a from mismatch", `convert: {path: a, from: string, to: int32, on_error: keep}`, D("_id", 1, "a", 1.5), D("_id", 1, "a", 1.5), nil},
	})
}

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 123e6, time.UTC)

func TestCompute(t *testing.T) {
	oid := bson.ObjectID{0x65, 0x1f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	dec, _ := bson.ParseDecimal128("12.50")
	runGolden(t, []goldenCase{
		{"string function", `compute: {path: d, expr: 'doc.email.split("@")[1]'}`,
			D("_id", 1, "email", "a@b.org"), D("_id", 1, "email", "a@b.org", "d", "b.org"), nil},
		{"int32 arithmetic gives int64", `compute: {path: n, expr: 'doc.a + 1'}`,
			D("_id", 1, "a", 41), D("_id", 1, "a", 41, "n", int64(42)), nil},
		{"sees earlier writes of the step", `compute: {path: n, expr: 'doc.p.q * 2.0'}`,
			D("_id", 1, "p", D("q", 1.25)), D("_id", 1, "p", D("q", 1.25), "n", 2.5), nil},
		{"replaces in place", `compute: {path: a, expr: 'doc.a.upperAscii()'}`,
			D("_id", 1, "a", "x", "b", 1), D("_id", 1, "a", "X", "b", 1), nil},
		{"bool", `compute: {path: ok, expr: 'has(doc.a) && !("z" in doc)'}`,
			D("_id", 1, "a", 1), D("_id", 1, "a", 1, "ok", true), nil},
		{"list becomes array", `compute: {path: l, expr: '[doc.a, "x", [true]]'}`,
			D("_id", 1, "a", 1), D("_id", 1, "a", 1, "l", A(int64(1), "x", A(true))), nil},
		{"array in, list out", `compute: {path: l, expr: 'doc.a.map(x, x * 2)'}`,
			D("_id", 1, "a", A(1, int64(2))), D("_id", 1, "a", A(1, int64(2)), "l", A(int64(2), int64(4))), nil},
		{"map becomes document with sorted keys", `compute: {path: m, expr: '{"z": 1, "a": {"b": null}}'}`,
			D("_id", 1), D("_id", 1, "m", D("a", D("b", nil), "z", int64(1))), nil},
		{"document in, document out", `compute: {path: m, expr: 'doc.p'}`,
			D("_id", 1, "p", D("y", 1, "x", "s")), D("_id", 1, "p", D("y", 1, "x", "s"), "m", D("x", "s", "y", int64(1))), nil},
		{"null", `compute: {path: n, expr: 'null'}`, D("_id", 1), D("_id", 1, "n", nil), nil},
		{"date is a timestamp", `compute: {path: y, expr: 'doc.t.getFullYear()'}`,
			D("_id", 1, "t", bson.NewDateTimeFromTime(testTime)), D("_id", 1, "t", bson.NewDateTimeFromTime(testTime), "y", int64(2024)), nil},
		{"timestamp becomes a date", `compute: {path: t, expr: 'timestamp("2024-05-06T07:08:09.123456Z")'}`,
			D("_id", 1), D("_id", 1, "t", bson.NewDateTimeFromTime(testTime)), nil},
		{"objectId is its hex string", `compute: {path: s, expr: 'doc.o'}`,
			D("_id", 1, "o", oid), D("_id", 1, "o", oid, "s", oid.Hex()), nil},
		{"decimal128 is its string", `compute: {path: s, expr: 'doc.n + "!"'}`,
			D("_id", 1, "n", dec), D("_id", 1, "n", dec, "s", "12.50!"), nil},
		{"bytes become binary", `compute: {path: b, expr: 'b"hi"'}`,
			D("_id", 1), D("_id", 1, "b", bson.Binary{Data: []byte("hi")}), nil},
		{"binary is bytes", `compute: {path: n, expr: 'size(doc.b)'}`,
			D("_id", 1, "b", bson.Binary{Subtype: 4, Data: make([]byte, 16)}), D("_id", 1, "b", bson.Binary{Subtype: 4, Data: make([]byte, 16)}, "n", int64(16)), nil},
		{"BSON timestamp is the timestamp of its seconds", `compute: {path: n, expr: 'int(doc.ts)'}`,
			D("_id", 1, "ts", bson.Timestamp{T: 1700000000, I: 5}), D("_id", 1, "ts", bson.Timestamp{T: 1700000000, I: 5}, "n", int64(1700000000)), nil},
		{"regex is its string form", `compute: {path: n, expr: 'doc.r'}`,
			D("_id", 1, "r", bson.Regex{Pattern: "^a", Options: "i"}), D("_id", 1, "r", bson.Regex{Pattern: "^a", Options: "i"}, "n", `{"pattern": "^a", "options": "i"}`), nil},
		{"uint becomes int64", `compute: {path: n, expr: '3u'}`, D("_id", 1), D("_id", 1, "n", int64(3)), nil},
		{"reads the key", `compute: {path: k, expr: 'string(doc._id)'}`, D("_id", 7), D("_id", 7, "k", "7"), nil},
		{"missing field fails", `compute: {path: n, expr: 'doc.nope'}`, D("_id", 1), nil, ErrCEL},
		{"runtime error fails", `compute: {path: n, expr: '1 / (size(doc) - 1)'}`, D("_id", 1), nil, ErrCEL},
		{"duration has no BSON form", `compute: {path: n, expr: 'duration("1s")'}`, D("_id", 1), nil, ErrCEL},
		{"cost limit stops runaway expressions", `compute: {path: n, expr: 'doc.l.all(x, doc.l.all(y, doc.l.all(z, x + y + z >= 0)))'}`,
			D("_id", 1, "l", ints(200)), nil, ErrCEL},
		{"writes through a scalar fails", `compute: {path: a.b, expr: '1'}`, D("_id", 1, "a", 1), nil, ErrPathConflict},
	})
}

// ints returns an array of n int32s.
func ints(n int) bson.A {
	a := make(bson.A, n)
	for i := range a {
		a[i] = int32(i)
	}
	return a
}

// A Spec is shared by every converge worker: Forward and Reverse must be safe concurrently
// (run with -race).
func TestConcurrentUse(t *testing.T) {
	spec := parseBody(t, benchSpec)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				d := benchDoc()
				d[0].Value = int64(g*1000 + i)
				fwd, err := spec.Forward(d)
				if !assert.NoError(t, err) {
					return
				}
				back, err := spec.Reverse(fwd)
				if !assert.NoError(t, err) || !assert.True(t, Equal(d, back)) {
					return
				}
			}
		})
	}
	wg.Wait()
}

// Only the fields an expression selects are converted for CEL; any other use of doc converts
// the whole document.
func TestSelectedFields(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`doc.a + doc.b.c`, []string{"a", "b"}},
		{`has(doc.a) ? doc.a : doc.a2`, []string{"a", "a2"}},
		{`doc.l.map(x, x * 2)`, []string{"l"}},
		{`1 + 2`, []string{}},
		{`size(doc)`, nil},
		{`"a" in doc`, nil},
		{`doc["a"]`, nil},
		{`doc.a + size(doc)`, nil},
		{`doc.exists(k, k == "a")`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			p, err := compileCEL(tc.expr)
			require.NoError(t, err)
			assert.Equal(t, tc.want, p.fields)
		})
	}
}
