package transform

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/ext"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// CELCostLimit caps the runtime cost of one evaluation of a compute expression (in CEL's cost
// units, roughly one per operation and per element a function walks), so that no spec can stall
// a pipeline: an expression that exceeds it fails with ErrCEL.
const CELCostLimit = 1_000_000

// celEnv declares the single variable `doc`, a map of the document as it is at the step, plus
// cel-go's string extensions (split, lowerAscii, replace, …).
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("doc", cel.MapType(cel.StringType, cel.DynType)),
		ext.Strings(),
	)
})

// celProgram is a compiled compute expression.
type celProgram struct {
	prg cel.Program
	// fields lists the top-level fields the expression reads when it only ever uses doc as
	// doc.FIELD, so that only those are converted for CEL; nil means the whole document.
	fields []string
}

// compileCEL type-checks expr and plans it once, for every document; the error carries CEL's
// own messages, one per problem, with positions inside the expression.
func compileCEL(expr string) (*celProgram, error) {
	env, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("%w: environment: %v", ErrCEL, err)
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		msgs := make([]string, 0, len(iss.Errors()))
		for _, e := range iss.Errors() {
			msgs = append(msgs, fmt.Sprintf("%s (at %d:%d)", e.Message, e.Location.Line(), e.Location.Column()+1))
		}
		return nil, fmt.Errorf("%w: %s", ErrCEL, strings.Join(msgs, "; "))
	}
	prg, err := env.Program(ast, cel.CostLimit(CELCostLimit))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCEL, err)
	}
	return &celProgram{prg: prg, fields: selectedFields(ast)}, nil
}

// selectedFields returns the fields of every doc.FIELD in the expression, or nil when doc is
// also used whole (size(doc), "x" in doc, doc.map(…), doc["x"]). A comprehension variable
// that shadows doc can only make the answer nil or add fields, which is harmless.
func selectedFields(a *cel.Ast) []string {
	fields := []string{}
	root := celast.NavigateAST(a.NativeRep())
	for _, id := range celast.MatchDescendants(root, celast.KindMatcher(celast.IdentKind)) {
		if id.AsIdent() != "doc" {
			continue
		}
		parent, ok := id.Parent()
		if !ok || parent.Kind() != celast.SelectKind {
			return nil
		}
		if f := parent.AsSelect().FieldName(); !slices.Contains(fields, f) {
			fields = append(fields, f)
		}
	}
	return fields
}

// evalCEL runs the program over doc and returns the result as a BSON value.
func evalCEL(p *celProgram, doc bson.D) (any, error) {
	var m map[string]any
	if p.fields == nil {
		m = celDoc(doc)
	} else {
		m = make(map[string]any, len(p.fields))
		for _, f := range p.fields {
			if i := indexOf(doc, f); i >= 0 {
				m[f] = toCEL(doc[i].Value)
			}
		}
	}
	out, _, err := p.prg.Eval(map[string]any{"doc": m})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCEL, err)
	}
	v, err := fromCEL(out)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCEL, err)
	}
	return v, nil
}

func celDoc(d bson.D) map[string]any {
	m := make(map[string]any, len(d))
	for _, e := range d {
		m[e.Key] = toCEL(e.Value)
	}
	return m
}

// toCEL maps a BSON value onto what CEL has: int32 widens to int, an ObjectID becomes its hex
// string, a decimal128 its string, a date a timestamp, binary its bytes (the subtype is lost),
// a BSON timestamp the timestamp of its seconds. Regexes, JavaScript and the other rare types
// become their string form.
func toCEL(v any) any {
	switch t := v.(type) {
	case nil, string, int64, float64, bool:
		return v
	case int32:
		return int64(t)
	case bson.D:
		return celDoc(t)
	case bson.A:
		l := make([]any, len(t))
		for i, e := range t {
			l[i] = toCEL(e)
		}
		return l
	case bson.ObjectID:
		return t.Hex()
	case bson.DateTime:
		return t.Time().UTC()
	case bson.Decimal128:
		return t.String()
	case bson.Binary:
		return t.Data
	case bson.Timestamp:
		return time.Unix(int64(t.T), 0).UTC()
	case bson.Null, bson.Undefined:
		return nil
	}
	return fmt.Sprint(v)
}

// fromCEL maps a CEL result back to BSON: int stays int64 (it is not narrowed to int32), a
// uint becomes int64 when it fits, bytes become generic binary, a timestamp a date (truncated to
// milliseconds), lists arrays and maps documents with their keys sorted (CEL maps have no
// order). Durations, types and optionals have no BSON form and fail.
func fromCEL(val ref.Val) (any, error) {
	switch v := val.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(v), nil
	case types.Int:
		return int64(v), nil
	case types.Uint:
		if uint64(v) > math.MaxInt64 {
			return nil, fmt.Errorf("uint %d overflows int64", uint64(v))
		}
		return int64(v), nil
	case types.Double:
		return float64(v), nil
	case types.String:
		return string(v), nil
	case types.Bytes:
		return bson.Binary{Subtype: bson.TypeBinaryGeneric, Data: []byte(v)}, nil
	case types.Timestamp:
		return bson.NewDateTimeFromTime(v.Time), nil
	case traits.Mapper:
		return fromCELMap(v)
	case traits.Lister:
		n, ok := v.Size().(types.Int)
		if !ok {
			return nil, fmt.Errorf("list without a size")
		}
		a := make(bson.A, n)
		for i := range a {
			e, err := fromCEL(v.Get(types.Int(i)))
			if err != nil {
				return nil, err
			}
			a[i] = e
		}
		return a, nil
	case *types.Err:
		return nil, v
	}
	return nil, fmt.Errorf("result of type %s has no BSON equivalent", val.Type().TypeName())
}

func fromCELMap(m traits.Mapper) (any, error) {
	var keys []string
	for it := m.Iterator(); it.HasNext() == types.True; {
		k, ok := it.Next().(types.String)
		if !ok {
			return nil, fmt.Errorf("map with a non-string key has no BSON equivalent")
		}
		keys = append(keys, string(k))
	}
	slices.Sort(keys)
	d := make(bson.D, len(keys))
	for i, k := range keys {
		e, err := fromCEL(m.Get(types.String(k)))
		if err != nil {
			return nil, err
		}
		d[i] = bson.E{Key: k, Value: e}
	}
	return d, nil
}
