package transform

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFindsPathConflicts(t *testing.T) {
	cases := []struct {
		name  string
		steps []string // forward steps, each on its own line from line 5
		line  int
		col   int
		path  string
		msg   string
	}{
		{"rename onto a set path", []string{`set: {path: a.b, value: 1}`, `rename: {from: x, to: a.b}`},
			6, 27, "forward[1].rename.to", "forward[0] already wrote a.b"},
		{"set over a moved path", []string{`move: {from: email, to: profile.email}`, `set: {path: email, value: x}`},
			6, 17, "forward[1].set.path", "forward[0] moved email away (to profile.email)"},
		{"compute inside a moved document", []string{`move: {from: a, to: b}`, `compute: {path: a.x, expr: '1'}`},
			6, 21, "forward[1].compute.path", "forward[0] moved a away (to b), and a.x is inside it"},
		{"set over the document a field moved from", []string{`move: {from: a.x, to: b}`, `set: {path: a, value: 1}`},
			6, 17, "forward[1].set.path", "forward[0] moved a.x away (to b), which is inside a"},
		{"default over a moved path", []string{`rename: {from: email, to: mail}`, `default: {path: email, value: none}`},
			6, 21, "forward[1].default.path", "forward[0] moved email away (to mail)"},
		{"set after a drop", []string{`drop: {path: legacy}`, `set: {path: legacy, value: 1}`},
			6, 17, "forward[1].set.path", "forward[0] dropped legacy"},
		{"set twice", []string{`set: {path: v, value: 1}`, `set: {path: v, value: 2}`},
			6, 17, "forward[1].set.path", "forward[0] already wrote v"},
		{"compute over a rename's destination", []string{`rename: {from: a, to: b}`, `compute: {path: b, expr: '1'}`},
			6, 21, "forward[1].compute.path", "forward[0] already wrote b"},
		{"set over a converted field", []string{`convert: {path: age, from: int32, to: int64}`, `set: {path: age, value: 1}`},
			6, 17, "forward[1].set.path", "forward[0] already wrote age"},
		{"rename onto a document a field was written in", []string{`set: {path: p.v, value: 1}`, `rename: {from: x, to: p}`},
			6, 27, "forward[1].rename.to", "forward[0] already wrote p.v, which is inside p"},
		{"inside a set scalar", []string{`set: {path: a, value: 2}`, `default: {path: a.b, value: 1}`},
			6, 21, "forward[1].default.path", "forward[0] sets a to 2, not a document, and a.b is inside it"},
		{"inside a converted field", []string{`convert: {path: a, from: int32, to: int64}`, `compute: {path: a.b, expr: '1'}`},
			6, 21, "forward[1].compute.path", "forward[0] converts a to int64, not a document, and a.b is inside it"},
		{"the nearest earlier step is named", []string{`set: {path: a, value: 1}`, `rename: {from: a, to: b}`, `set: {path: b, value: 2}`},
			7, 17, "forward[2].set.path", "forward[1] already wrote b"},
		{"a swap", []string{`rename: {from: a, to: t}`, `rename: {from: b, to: a}`, `rename: {from: t, to: b}`},
			6, 27, "forward[1].rename.to", "forward[0] moved a away (to t)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := body("forward:\n  - " + strings.Join(tc.steps, "\n  - ") + "\nreverse: []\n")
			_, err := Parse("c.yaml", []byte(src))
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrPathConflict)
			var errs SpecErrors
			require.ErrorAs(t, err, &errs)
			require.NotEmpty(t, errs)
			e := errs[0]
			assert.Equal(t, tc.line, e.Line, "line")
			assert.Equal(t, tc.col, e.Column, "column")
			assert.Equal(t, tc.path, e.Path)
			assert.Equal(t, "path conflict: "+tc.msg, e.Msg)
		})
	}
}

func TestParseAllowsLegitimateStepOrders(t *testing.T) {
	cases := map[string][]string{
		"siblings in one new document": {`rename: {from: name, to: profile.full_name}`, `move: {from: email, to: profile.email}`},
		"a chain of renames":           {`rename: {from: a, to: b}`, `rename: {from: b, to: c}`},
		"convert a renamed field":      {`rename: {from: years, to: age}`, `convert: {path: age, from: int32, to: int64}`},
		"chained converts":             {`convert: {path: n, from: int32, to: int64}`, `convert: {path: n, from: int64, to: string}`},
		"a temporary field":            {`compute: {path: tmp, expr: '1'}`, `compute: {path: v, expr: 'doc.tmp + 1'}`, `drop: {path: tmp}`},
		"default after a rename":       {`rename: {from: x, to: a}`, `default: {path: a, value: 0}`},
		"default after a convert":      {`convert: {path: a, to: int32, on_error: drop}`, `default: {path: a, value: 0}`},
		"write inside a moved document": {`rename: {from: address, to: profile.address}`,
			`compute: {path: profile.address.country, expr: '"NL"'}`},
		"write inside a set document":  {`set: {path: meta, value: {v: 2}}`, `set: {path: meta.at, value: 1}`},
		"rename away what a set wrote": {`set: {path: a, value: 1}`, `rename: {from: a, to: b}`},
		"drop what a compute wrote":    {`compute: {path: a, expr: '1'}`, `drop: {path: a}`},
		"drop twice":                   {`drop: {path: a.b}`, `drop: {path: a}`},
		"write next to a moved field":  {`move: {from: a.x, to: b}`, `set: {path: a.y, value: 1}`},
		"similar names":                {`move: {from: ab, to: c}`, `set: {path: a, value: 1}`, `set: {path: abc, value: 1}`},
	}
	for name, steps := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("ok.yaml", []byte(body("forward:\n  - "+strings.Join(steps, "\n  - ")+"\nreverse: []\n")))
			require.NoError(t, err)
		})
	}
}

func TestParseFindsPathConflictsInReverse(t *testing.T) {
	_, err := Parse("r.yaml", []byte(body(`forward:
  - move: {from: email, to: profile.email}
  - set: {path: v, value: 2}
reverse:
  - move: {from: profile.email, to: email}
  - drop: {path: v}
  - set: {path: email, value: x}
`)))
	var errs SpecErrors
	require.ErrorAs(t, err, &errs)
	require.Len(t, errs, 1, "%v", err)
	assert.Equal(t, "r.yaml:10:17: reverse[2].set.path: path conflict: reverse[0] already wrote email", errs[0].Error())
}

// Every step is judged, and the irreversible steps are still named.
func TestParseReportsEveryConflict(t *testing.T) {
	_, err := Parse("m.yaml", []byte(body(`forward:
  - set: {path: a, value: 1}
  - set: {path: a, value: 2}
  - drop: {path: b}
  - compute: {path: b, expr: '1'}
`)))
	var errs SpecErrors
	require.ErrorAs(t, err, &errs)
	var got []string
	for _, e := range errs {
		got = append(got, e.Path)
	}
	assert.Equal(t, []string{"forward[1].set.path", "forward[2].drop", "forward[3].compute.path"}, got)
	assert.ErrorIs(t, err, ErrIrreversible)
}

// The example spec, and the explicit reverse its comment spells out, have no conflicts.
func TestExampleSpecHasNoConflicts(t *testing.T) {
	data, err := os.ReadFile("../examples/users-v2.yaml")
	require.NoError(t, err)
	_, err = Parse("users-v2.yaml", data)
	require.NoError(t, err)

	text := string(data)
	i := strings.Index(text, "# reverse:")
	require.Positive(t, i)
	var rev strings.Builder
	for _, l := range strings.Split(text[i:], "\n") {
		rev.WriteString(strings.TrimPrefix(strings.TrimPrefix(l, "#"), " ") + "\n")
	}
	spec, err := Parse("users-v2-explicit.yaml", []byte(text[:i]+rev.String()))
	require.NoError(t, err)
	assert.False(t, spec.ReverseDerived())
	assert.Len(t, spec.ReverseSteps(), 6)
}
