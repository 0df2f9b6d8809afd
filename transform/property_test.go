package transform

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// canonical marshals v with the fields of every document sorted by name: an equality check
// independent of Equal, which the round-trip tests use as a second opinion.
func canonical(t testing.TB, d bson.D) []byte {
	t.Helper()
	b, err := bson.Marshal(sortFields(d))
	require.NoError(t, err)
	return b
}

func sortFields(v any) any {
	switch t := v.(type) {
	case bson.D:
		c := make(bson.D, len(t))
		for i, e := range t {
			c[i] = bson.E{Key: e.Key, Value: sortFields(e.Value)}
		}
		slices.SortStableFunc(c, func(a, b bson.E) int { return strings.Compare(a.Key, b.Key) })
		return c
	case bson.A:
		c := make(bson.A, len(t))
		for i, e := range t {
			c[i] = sortFields(e)
		}
		return c
	}
	return v
}

func marshal(t testing.TB, d bson.D) []byte {
	t.Helper()
	b, err := bson.Marshal(d)
	require.NoError(t, err)
	return b
}

// roundTrip checks reverse(forward(d)) == d and that neither direction changes its input.
// It returns false when Forward refuses d with one of the errors a document may legitimately
// meet (a conflicting path, a value of another type); any other error fails the test.
func roundTrip(t *testing.T, spec *Spec, d bson.D) bool {
	t.Helper()
	in := marshal(t, d)
	fwd, err := spec.Forward(d)
	require.Equal(t, in, marshal(t, d), "Forward changed its input")
	if err != nil {
		require.True(t, errors.Is(err, ErrPathConflict) || errors.Is(err, ErrConvert), "forward %v: %v", d, err)
		return false
	}
	mid := marshal(t, fwd)
	back, err := spec.Reverse(fwd)
	require.NoError(t, err, "reverse of %v (from %v)", fwd, d)
	require.Equal(t, mid, marshal(t, fwd), "Reverse changed its input")
	require.True(t, Equal(d, back), "round trip\n in: %v\nfwd: %v\nout: %v", d, fwd, back)
	require.True(t, bytes.Equal(canonical(t, d), canonical(t, back)), "canonical bytes differ\n in: %v\nout: %v", d, back)
	return true
}

func TestPropertyExampleSpec(t *testing.T) {
	spec, err := Load("../examples/users-v2.yaml")
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(7, 11))
	for i := range 2000 {
		user := D(
			"_id", fmt.Sprintf("user-%06d", i),
			"name", randomOf(r, TypeString),
			"email", fmt.Sprintf("%s@%s", randomOf(r, TypeString), randomOf(r, TypeString)),
			"age", randomOf(r, TypeInt32),
			"created", bson.DateTime(r.Int64N(253402300800000+62135596800000)-62135596800000), // years 1-9999
		)
		if r.IntN(2) == 0 {
			user = append(user, randomDoc(r, 3, "x", r.IntN(5))...)
		}
		require.True(t, roundTrip(t, spec, user), "%v", user)
	}
}

// specGen writes random reversible specs: renames and moves among the documents' fields (f0…f7,
// nested) and new ones (r0…), lossless converts (chained) of fields the document is then made
// to hold, and sets and computes of fields documents never have (c0…), directly or inside
// existing documents. No step writes a path an earlier one moved away, which Parse rejects.
type specGen struct {
	r       *rand.Rand
	steps   []string
	fresh   int
	fits    []fit    // values to plant in each document so that converts have input
	removed []string // the froms of earlier renames and moves
}

// reuses reports whether writing path would reuse a field an earlier step moved away: the
// same path, one inside it, or one holding it.
func (g *specGen) reuses(path string) bool {
	for _, r := range g.removed {
		if path == r || strings.HasPrefix(path, r+".") || strings.HasPrefix(r, path+".") {
			return true
		}
	}
	return false
}

type fit struct {
	path []string
	typ  string
}

func (g *specGen) name(prefix string) string {
	g.fresh++
	return fmt.Sprintf("%s%d", prefix, g.fresh)
}

func (g *specGen) docPath() string {
	segs := make([]string, 1+g.r.IntN(3))
	for i := range segs {
		segs[i] = fmt.Sprintf("f%d", g.r.IntN(8))
	}
	return strings.Join(segs, ".")
}

func (g *specGen) destPath() string {
	switch g.r.IntN(4) {
	case 0:
		return g.name("r")
	case 1:
		return fmt.Sprintf("f%d.%s", g.r.IntN(8), g.name("r"))
	case 2:
		return fmt.Sprintf("%s.f%d", g.name("r"), g.r.IntN(8))
	default:
		return fmt.Sprintf("%s.%s.%s", g.name("r"), g.name("r"), g.name("r"))
	}
}

var computeExprs = []string{
	`size(doc)`,
	`"f1" in doc`,
	`has(doc.f0) ? "yes" : "no"`,
	`{"n": size(doc), "keys": doc.filter(k, k.startsWith("f")).size()}`,
	`[1, "a", b"x", 2.5, null, timestamp("2024-01-01T00:00:00Z")]`,
	`doc.exists(k, k == "_id")`,
}

var setValues = []string{`2`, `3000000000`, `-1.5`, `"x"`, `true`, `null`, `[1, [2, {a: b}]]`, `{z: 1, a: {b: [c]}}`}

func (g *specGen) spec(target string) string {
	var prev []string // destinations of earlier renames, to rename again
	for range 3 + g.r.IntN(6) {
		switch k := g.r.IntN(10); {
		case k < 4:
			from := g.docPath()
			if len(prev) > 0 && g.r.IntN(3) == 0 {
				from = prev[g.r.IntN(len(prev))]
			}
			to := g.destPath()
			if strings.HasPrefix(to, from+".") || g.reuses(to) {
				continue
			}
			g.removed = append(g.removed, from)
			kind := "rename"
			if g.r.IntN(2) == 0 {
				kind = "move"
			}
			g.steps = append(g.steps, fmt.Sprintf("%s: {from: %s, to: %s}", kind, from, to))
			prev = append(prev, to)
		case k < 7:
			path := g.name("v")
			if g.r.IntN(2) == 0 {
				path = g.name("g") + "." + path
			}
			var pairs [][2]string
			for p := range lossless {
				pairs = append(pairs, p)
			}
			slices.SortFunc(pairs, func(a, b [2]string) int { return strings.Compare(a[0]+a[1], b[0]+b[1]) })
			p := pairs[g.r.IntN(len(pairs))]
			if p[0] == TypeDate && p[1] == TypeString {
				p[1] = TypeInt64 // random dates may lie outside RFC 3339's years
			}
			g.fits = append(g.fits, fit{splitPath(path), p[0]})
			g.steps = append(g.steps, fmt.Sprintf("convert: {path: %s, from: %s, to: %s}", path, p[0], p[1]))
			for _, q := range pairs { // chain a second conversion when one starts where this ends
				if q[0] == p[1] && g.r.IntN(2) == 0 {
					g.steps = append(g.steps, fmt.Sprintf("convert: {path: %s, from: %s, to: %s}", path, q[0], q[1]))
					break
				}
			}
		default:
			path := g.name("c")
			if g.r.IntN(2) == 0 {
				path = fmt.Sprintf("f%d.%s", g.r.IntN(8), path)
			}
			if g.reuses(path) {
				continue
			}
			if g.r.IntN(2) == 0 {
				g.steps = append(g.steps, fmt.Sprintf("set: {path: %s, value: %s}", path, setValues[g.r.IntN(len(setValues))]))
			} else {
				g.steps = append(g.steps, fmt.Sprintf("compute: {path: %s, expr: '%s'}", path, computeExprs[g.r.IntN(len(computeExprs))]))
			}
		}
	}
	var b strings.Builder
	b.WriteString("name: generated\n" + srcLine + target + "forward:\n")
	for _, s := range g.steps {
		b.WriteString("  - " + s + "\n")
	}
	return b.String()
}

// keyConfigs are the key settings a generated spec uses, with the source key field name.
var keyConfigs = []struct {
	target, key, field string
}{
	{tgtLine, "", "_id"},
	{tgtLine, "key: {source: uid}\n", "uid"},
	{tgtLine, "key: {target: id2}\n", "_id"},
	{ddbLine, "key: {partition: pk}\n", "_id"},
	{ddbLine, "key: {source: uid, partition: pk, sort: {attribute: sk, value: profile}}\n", "uid"},
}

func TestPropertyGeneratedSpecs(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 4242))
	total, ok := 0, 0
	for i := range 120 {
		kc := keyConfigs[i%len(keyConfigs)]
		g := &specGen{r: r}
		src := g.spec(kc.target + kc.key)
		spec, err := Parse(fmt.Sprintf("generated-%d.yaml", i), []byte(src))
		require.NoError(t, err, src)
		require.True(t, spec.ReverseDerived())
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			for range 40 {
				d := append(D(kc.field, randomKey(r)), randomDoc(r, 3, "f", 1+r.IntN(8))...)
				for _, f := range g.fits {
					if r.IntN(10) > 0 {
						require.NoError(t, set(&d, f.path, randomOf(r, f.typ)))
					}
				}
				total++
				if roundTrip(t, spec, d) {
					ok++
				}
			}
		})
	}
	t.Logf("%d of %d documents went forward and back", ok, total)
	assert.GreaterOrEqual(t, total, 4000)
	assert.Greater(t, ok, total/2, "too few documents pass forward for the test to mean much")
}

func randomKey(r *rand.Rand) any {
	switch r.IntN(3) {
	case 0:
		return fmt.Sprintf("k-%d", r.Uint32())
	case 1:
		return int64(r.Uint64())
	}
	return randomOf(r, TypeObjectID)
}

// The round trip of the documented exception: an empty document on the way to a destination.
func TestEmptyDestinationDocumentIsNotRestored(t *testing.T) {
	spec := parseBody(t, "forward:\n  - rename: {from: x, to: p.x}\n")
	d := D("_id", 1, "x", 1, "p", D())
	fwd, err := spec.Forward(d)
	require.NoError(t, err)
	assert.Equal(t, D("_id", 1, "p", D("x", 1)), fwd)
	back, err := spec.Reverse(fwd)
	require.NoError(t, err)
	assert.Equal(t, D("_id", 1, "x", 1), back)
}

func TestEqual(t *testing.T) {
	cases := []struct {
		name string
		a, b bson.D
		want bool
	}{
		{"same", D("a", 1, "b", D("c", A(1, 2))), D("a", 1, "b", D("c", A(1, 2))), true},
		{"field order ignored", D("a", 1, "b", D("c", 1, "d", 2)), D("b", D("d", 2, "c", 1), "a", 1), true},
		{"array order counts", D("a", A(1, 2)), D("a", A(2, 1)), false},
		{"types count", D("a", 1), D("a", int64(1)), false},
		{"NaN equals NaN", D("a", math.NaN()), D("a", math.NaN()), true},
		{"zero and negative zero differ", D("f", 0.0), D("f", math.Copysign(0, -1)), false},
		{"missing field", D("a", 1), D("a", 1, "b", nil), false},
		{"other field", D("a", 1), D("b", 1), false},
		{"null and missing differ", D("a", nil), D("b", nil), false},
		{"binary subtype counts", D("a", bson.Binary{Subtype: 0, Data: []byte{1}}), D("a", bson.Binary{Subtype: 4, Data: []byte{1}}), false},
		{"duplicates compare in order", D("a", 1, "a", 2), D("a", 2, "a", 1), false},
		{"duplicates in the same order", D("a", 1, "a", 2), D("a", 1, "a", 2), true},
		{"regex by value", D("a", bson.Regex{Pattern: "x"}), D("a", bson.Regex{Pattern: "x"}), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Equal(tc.a, tc.b))
			assert.Equal(t, tc.want, Equal(tc.b, tc.a))
		})
	}
}
