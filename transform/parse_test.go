package transform

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

const (
	srcLine = `source: {mongodb: {uri: "mongodb://h/", database: d, collection: a}}` + "\n"
	tgtLine = `target: {mongodb: {uri: "mongodb://h/", database: d, collection: b}}` + "\n"
	ddbLine = `target: {dynamodb: {table: users, region: us-east-1}}` + "\n"
	okStep  = "forward:\n  - rename: {from: a, to: b}\n"
)

// body returns a spec whose first three lines are name, source and a MongoDB target.
func body(rest string) string { return "name: t\n" + srcLine + tgtLine + rest }

// ddb returns a spec whose first three lines are name, source and a DynamoDB target.
func ddb(rest string) string { return "name: t\n" + srcLine + ddbLine + rest }

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		err  error
		line int
		col  int
		path string
		msg  string
	}{
		{"syntax error", "name: t\nsource: x\n  bad: 1\n", ErrSyntax, 3, 0, "", "mapping values are not allowed"},
		{"empty file", "# nothing\n", ErrRequired, 0, 0, "", "empty spec"},
		{"two documents", body(okStep) + "---\nname: u\n", ErrSyntax, 6, 1, "", "second YAML document"},
		{"root is not a mapping", "- a\n", ErrInvalidValue, 1, 1, "", "must be a mapping"},
		{"unknown top-level key", body(okStep + "extra: 1\n"), ErrUnknownKey, 6, 1, "extra", `unknown key "extra"`},
		{"duplicate key", body(okStep + "name: u\n"), ErrDuplicateKey, 6, 1, "name", "appears twice (first at line 1)"},
		{"missing name", srcLine + tgtLine + okStep, ErrRequired, 1, 1, "name", "required"},
		{"empty name", "name: \n" + srcLine + tgtLine + okStep, ErrRequired, 1, 6, "name", "must not be empty"},
		{"bad name", "name: Users\n" + srcLine + tgtLine + okStep, ErrInvalidValue, 1, 7, "name", "must match"},
		{"name is not a string", "name: [a]\n" + srcLine + tgtLine + okStep, ErrInvalidValue, 1, 7, "name", "must be a string"},
		{"missing source", "name: t\n" + tgtLine + okStep, ErrRequired, 1, 1, "source", "required"},
		{"source is dynamodb", "name: t\nsource: {dynamodb: {table: abc, region: x}}\n" + tgtLine + okStep,
			ErrUnknownKey, 2, 10, "source.dynamodb", `unknown key "dynamodb" (want one of mongodb)`},
		{"source without mongodb", "name: t\nsource: {}\n" + tgtLine + okStep, ErrRequired, 2, 1, "source.mongodb", "required"},
		{"source missing collection", "name: t\nsource: {mongodb: {uri: \"mongodb://h/\", database: d}}\n" + tgtLine + okStep,
			ErrRequired, 2, 10, "source.mongodb.collection", "required"},
		{"unknown endpoint field", "name: t\nsource: {mongodb: {uri: \"mongodb://h/\", database: d, collection: a, db: x}}\n" + tgtLine + okStep,
			ErrUnknownKey, 2, 69, "source.mongodb.db", "unknown key"},
		{"bad uri", "name: t\nsource: {mongodb: {uri: \"http://h/\", database: d, collection: a}}\n" + tgtLine + okStep,
			ErrInvalidValue, 2, 25, "source.mongodb.uri", "mongodb://"},
		{"bad database", "name: t\nsource: {mongodb: {uri: \"mongodb://h/\", database: a.b, collection: a}}\n" + tgtLine + okStep,
			ErrInvalidValue, 2, 51, "source.mongodb.database", "database name"},
		{"target with both", "name: t\n" + srcLine + "target:\n  mongodb: {uri: \"mongodb://h/\", database: d, collection: b}\n  dynamodb: {table: users, region: x}\n" + okStep,
			ErrInvalidValue, 3, 1, "target", "needs exactly one of mongodb, dynamodb; has both"},
		{"target with neither", "name: t\n" + srcLine + "target: {}\n" + okStep,
			ErrInvalidValue, 3, 1, "target", "has neither"},
		{"target is the source", "name: t\n" + srcLine + "target: {mongodb: {uri: \"mongodb://h/\", database: d, collection: a}}\n" + okStep,
			ErrInvalidValue, 3, 1, "target", "target is the source collection"},
		{"bad dynamodb table", "name: t\n" + srcLine + "target: {dynamodb: {table: a, region: us-east-1}}\nkey: {partition: pk}\n" + okStep,
			ErrInvalidValue, 3, 28, "target.dynamodb.table", "table name"},
		{"bad dynamodb endpoint", "name: t\n" + srcLine + "target: {dynamodb: {table: abc, region: us-east-1, endpoint: \"127.0.0.1:5000\"}}\nkey: {partition: pk}\n" + okStep,
			ErrInvalidValue, 3, 62, "target.dynamodb.endpoint", "http://"},
		{"dynamodb without key", ddb(okStep), ErrRequired, 3, 1, "key.partition", "required for a dynamodb target"},
		{"dynamodb without partition", ddb("key: {source: _id}\n" + okStep), ErrRequired, 4, 1, "key.partition", "required"},
		{"key.target with dynamodb", ddb("key: {partition: pk, target: x}\n" + okStep), ErrInvalidValue, 4, 22, "key.target", "only for a mongodb target"},
		{"key.partition with mongodb", body("key: {partition: pk}\n" + okStep), ErrInvalidValue, 4, 7, "key.partition", "only for a dynamodb target"},
		{"key.sort with mongodb", body("key: {sort: {attribute: sk, value: x}}\n" + okStep), ErrInvalidValue, 4, 7, "key.sort", "only for a dynamodb target"},
		{"empty partition", ddb("key: {partition: \"\"}\n" + okStep), ErrRequired, 4, 18, "key.partition", "must not be empty"},
		{"empty key source", body("key: {source: \"\"}\n" + okStep), ErrRequired, 4, 15, "key.source", "must not be empty"},
		{"nested key field", body("key: {source: a.b}\n" + okStep), ErrInvalidValue, 4, 15, "key.source", "top-level field"},
		{"unknown key setting", body("key: {primary: x}\n" + okStep), ErrUnknownKey, 4, 7, "key.primary", "unknown key"},
		{"sort without value", ddb("key: {partition: pk, sort: {attribute: sk}}\n" + okStep), ErrRequired, 4, 22, "key.sort.value", "required"},
		{"sort value of another type", ddb("key: {partition: pk, sort: {attribute: sk, value: true}}\n" + okStep), ErrInvalidValue, 4, 51, "key.sort.value", "string or a number"},
		{"sort attribute is the partition", ddb("key: {partition: pk, sort: {attribute: pk, value: x}}\n" + okStep), ErrInvalidValue, 4, 40, "key.sort.attribute", "must differ"},

		{"missing forward", body(""), ErrRequired, 1, 1, "forward", "required"},
		{"empty forward", body("forward: []\n"), ErrRequired, 4, 1, "forward", "at least one step"},
		{"forward is not a list", body("forward: {rename: {from: a, to: b}}\n"), ErrInvalidValue, 4, 10, "forward", "must be a list"},
		{"step is not a mapping", body("forward:\n  - rename\n"), ErrInvalidValue, 5, 5, "forward[0]", "must be a mapping"},
		{"unknown step kind", body("forward:\n  - rename: {from: a, to: b}\n  - rname: {from: a, to: b}\n"),
			ErrUnknownKey, 6, 5, "forward[1].rname", `unknown step kind "rname" (want one of rename, move, drop, set, default, convert, compute)`},
		{"step without kind", body("forward:\n  - {}\n"), ErrStepKind, 5, 5, "forward[0]", "step has no kind"},
		{"step with two kinds", body("forward:\n  - rename: {from: a, to: b}\n    set: {path: c, value: 1}\n"),
			ErrStepKind, 5, 5, "forward[0]", "step has 2 kinds (rename, set)"},
		{"unknown step field", body("forward:\n  - rename: {from: a, to: b, as: c}\n"), ErrUnknownKey, 5, 30, "forward[0].rename.as", `unknown field "as"`},
		{"missing step field", body("forward:\n  - rename: {from: a}\n"), ErrRequired, 5, 5, "forward[0].rename.to", "required"},
		{"step body is not a mapping", body("forward:\n  - drop: legacy\n"), ErrInvalidValue, 5, 11, "forward[0].drop", "must be a mapping"},
		{"empty path", body("forward:\n  - drop: {path: \"\"}\n"), ErrRequired, 5, 18, "forward[0].drop.path", "must not be empty"},
		{"empty segment", body("forward:\n  - drop: {path: a..b}\n"), ErrInvalidPath, 5, 18, "forward[0].drop.path", "empty segment"},
		{"trailing dot", body("forward:\n  - drop: {path: a.}\n"), ErrInvalidPath, 5, 18, "forward[0].drop.path", "empty segment"},
		{"dollar segment", body("forward:\n  - set: {path: a.$b, value: 1}\n"), ErrInvalidPath, 5, 17, "forward[0].set.path", "starting with $"},
		{"path is the key", body("forward:\n  - drop: {path: _id}\n"), ErrInvalidPath, 5, 18, "forward[0].drop.path", `touches the key field "_id"`},
		{"path inside the key", body("forward:\n  - set: {path: _id.x, value: 1}\n"), ErrInvalidPath, 5, 17, "forward[0].set.path", `touches the key field "_id"`},
		{"rename from the key", body("forward:\n  - rename: {from: _id, to: id}\n"), ErrInvalidPath, 5, 20, "forward[0].rename.from", "key field"},
		{"path is the custom source key", body("key: {source: uid}\nforward:\n  - rename: {from: a, to: uid.x}\n"),
			ErrInvalidPath, 6, 27, "forward[0].rename.to", `touches the key field "uid"`},
		{"path is the target key", body("key: {source: uid, target: user_id}\nforward:\n  - compute: {path: user_id, expr: '1'}\n"),
			ErrInvalidPath, 6, 21, "forward[0].compute.path", `touches the key field "user_id"`},
		{"path is the partition", ddb("key: {partition: pk}\nforward:\n  - set: {path: pk, value: 1}\n"),
			ErrInvalidPath, 6, 17, "forward[0].set.path", `"pk"`},
		{"path is the sort attribute", ddb("key: {partition: pk, sort: {attribute: sk, value: 1}}\nforward:\n  - rename: {from: a, to: sk}\n"),
			ErrInvalidPath, 6, 27, "forward[0].rename.to", `"sk"`},
		{"rename onto itself", body("forward:\n  - rename: {from: a.b, to: a.b}\n"), ErrInvalidPath, 5, 29, "forward[0].rename.to", "same as from"},
		{"rename into itself", body("forward:\n  - move: {from: a, to: a.b}\n"), ErrInvalidPath, 5, 25, "forward[0].move.to", `"a.b" is inside from "a"`},
		{"rename onto its parent", body("forward:\n  - move: {from: a.b, to: a}\n"), ErrInvalidPath, 5, 27, "forward[0].move.to", `from "a.b" is inside "a"`},
		{"set without value", body("forward:\n  - set: {path: a}\n"), ErrRequired, 5, 5, "forward[0].set.value", "required"},
		{"integer beyond int64", body("forward:\n  - set: {path: a, value: 99999999999999999999}\n"), ErrInvalidValue, 5, 27, "forward[0].set.value", "does not fit int64"},
		{"constant with a $ field", body("forward:\n  - set: {path: a, value: {$set: 1}}\n"), ErrInvalidValue, 5, 28, "forward[0].set.value.$set", "must not start with $"},
		{"constant with a custom tag", body("forward:\n  - default: {path: a, value: !date 2024-01-01}\n"), ErrInvalidValue, 5, 31, "forward[0].default.value", "cannot use !date"},
		{"recursive alias", body("forward:\n  - set: &a {path: a, value: [*a]}\n"), ErrInvalidValue, 5, 31, "forward[0].set.value", "aliases expand too far"},
		{"convert without to", body("forward:\n  - convert: {path: a, from: int32}\n"), ErrRequired, 5, 5, "forward[0].convert.to", "required"},
		{"unknown type", body("forward:\n  - convert: {path: a, from: int32, to: int}\n"), ErrInvalidValue, 5, 41, "forward[0].convert.to", `unknown type "int"`},
		{"unknown from type", body("forward:\n  - convert: {path: a, from: long, to: int64}\n"), ErrInvalidValue, 5, 30, "forward[0].convert.from", `unknown type "long"`},
		{"from equals to", body("forward:\n  - convert: {path: a, from: int64, to: int64}\n"), ErrInvalidValue, 5, 30, "forward[0].convert.from", "both int64"},
		{"unsupported pair", body("forward:\n  - convert: {path: a, from: objectId, to: int32}\n"), ErrInvalidValue, 5, 30, "forward[0].convert.to",
			"cannot convert objectId to int32 (objectId converts to string)"},
		{"unknown policy", body("forward:\n  - convert: {path: a, from: int32, to: int64, on_error: skip}\n"), ErrInvalidValue, 5, 58, "forward[0].convert.on_error",
			`unknown on_error policy "skip" (want one of fail, null, keep, drop, default)`},
		{"default policy without default", body("forward:\n  - convert: {path: a, to: int64, on_error: default}\nreverse: []\n"), ErrRequired, 5, 5, "forward[0].convert.default", "required with on_error: default"},
		{"default without default policy", body("forward:\n  - convert: {path: a, from: int32, to: int64, default: 0}\n"), ErrInvalidValue, 5, 48, "forward[0].convert.default", "only allowed with on_error: default"},
		{"CEL syntax error", body("forward:\n  - compute: {path: a, expr: 'doc.b +'}\n"), ErrCEL, 5, 30, "forward[0].compute.expr", "Syntax error"},
		{"CEL undeclared name", body("forward:\n  - compute: {path: a, expr: 'document.b'}\n"), ErrCEL, 5, 30, "forward[0].compute.expr", "undeclared reference to 'document'"},
		{"CEL type error", body("forward:\n  - compute: {path: a, expr: '1 + \"x\"'}\n"), ErrCEL, 5, 30, "forward[0].compute.expr", "no matching overload"},
		{"empty expression", body("forward:\n  - compute: {path: a, expr: ''}\n"), ErrRequired, 5, 30, "forward[0].compute.expr", "must not be empty"},

		{"drop without reverse", body("forward:\n  - rename: {from: a, to: b}\n  - drop: {path: legacy}\n"),
			ErrIrreversible, 6, 5, "forward[1].drop", "drop legacy is irreversible: drop removes data"},
		{"default without reverse", body("forward:\n  - default: {path: s, value: x}\n"),
			ErrIrreversible, 5, 5, "forward[0].default", `default s = "x" if absent is irreversible`},
		{"convert without from", body("forward:\n  - convert: {path: a, to: string}\n"),
			ErrIrreversible, 5, 5, "forward[0].convert", "original type is unknown"},
		{"lossy convert", body("forward:\n  - convert: {path: a, from: string, to: int32}\n"),
			ErrIrreversible, 5, 5, "forward[0].convert", "convert string -> int32 is not a lossless pair"},
		{"lossless convert with a policy", body("forward:\n  - convert: {path: a, from: int32, to: int64, on_error: keep}\n"),
			ErrIrreversible, 5, 5, "forward[0].convert", "on_error: keep cannot be undone"},
		{"reverse is not a list", body(okStep + "reverse: {}\n"), ErrInvalidValue, 6, 10, "reverse", "must be a list"},
		{"bad reverse step", body(okStep + "reverse:\n  - rename: {from: b, to: ''}\n"), ErrRequired, 7, 27, "reverse[0].rename.to", "must not be empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := Parse("spec.yaml", []byte(tc.yaml))
			require.Error(t, err)
			assert.Nil(t, spec)
			assert.ErrorIs(t, err, tc.err)
			var errs SpecErrors
			require.ErrorAs(t, err, &errs)
			require.Len(t, errs, 1, "%v", err)
			e := errs[0]
			assert.Equal(t, "spec.yaml", e.File)
			assert.Equal(t, tc.line, e.Line, "line")
			assert.Equal(t, tc.col, e.Column, "column")
			assert.Equal(t, tc.path, e.Path)
			assert.Contains(t, e.Msg, tc.msg)

			prefix := "spec.yaml"
			if tc.line > 0 {
				prefix += fmt.Sprintf(":%d", tc.line)
			}
			if tc.col > 0 {
				prefix += fmt.Sprintf(":%d", tc.col)
			}
			if tc.path != "" {
				prefix += ": " + tc.path
			}
			assert.True(t, strings.HasPrefix(err.Error(), prefix+": "), "%q does not start with %q", err.Error(), prefix)
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	src := `name: Bad Name
source: {mongodb: {uri: "mongodb://h/", database: d}}
target: {mongodb: {uri: "mongodb://h/", database: d, collection: b}, dynamodb: {table: tbl, region: r}}
forward:
  - rename: {from: a, to: ""}
  - drop: {path: legacy}
  - convert: {path: n, from: int32, to: integer}
  - compute: {path: x, expr: 'doc.'}
  - frobnicate: {}
colour: blue
`
	_, err := Parse("many.yaml", []byte(src))
	var errs SpecErrors
	require.ErrorAs(t, err, &errs)
	want := []string{
		`many.yaml:1:7: name: "Bad Name" must match ^[a-z0-9][a-z0-9_.-]*$`,
		`many.yaml:2:10: source.mongodb.collection: required`,
		`many.yaml:3:1: target: needs exactly one of mongodb, dynamodb; has both`,
		`many.yaml:5:27: forward[0].rename.to: must not be empty`,
		`many.yaml:7:41: forward[2].convert.to: unknown type "integer" (want one of string, int32, int64, double, decimal128, bool, date, objectId)`,
		`many.yaml:8:30: forward[3].compute.expr: CEL expression failed: Syntax error: `,
		`many.yaml:9:5: forward[4].frobnicate: unknown step kind "frobnicate"`,
		`many.yaml:10:1: colour: unknown key "colour"`,
	}
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, len(want), err.Error())
	for i, w := range want {
		assert.True(t, strings.HasPrefix(lines[i], w), "line %d: %q, want prefix %q", i, lines[i], w)
	}
	// The drop is not reported as irreversible: with invalid steps the forward list is
	// rejected before reversibility is judged.
	assert.NotErrorIs(t, err, ErrIrreversible)
	assert.ErrorIs(t, err, ErrCEL)
	assert.ErrorIs(t, err, ErrUnknownKey)
}

// Every irreversible step is named, each on its own line.
func TestParseNamesEveryIrreversibleStep(t *testing.T) {
	_, err := Parse("s.yaml", []byte(body(`forward:
  - drop: {path: a}
  - rename: {from: b, to: c}
  - convert: {path: d, from: double, to: int64}
`)))
	var errs SpecErrors
	require.ErrorAs(t, err, &errs)
	require.Len(t, errs, 2)
	assert.Equal(t, "forward[0].drop", errs[0].Path)
	assert.Equal(t, "forward[2].convert", errs[1].Path)
	assert.Equal(t, "s.yaml:7:5: forward[2].convert: convert d double -> int64, on_error fail is irreversible: "+
		"convert double -> int64 is not a lossless pair; write an explicit reverse list", errs[1].Error())
}

func TestParseValid(t *testing.T) {
	src := `name: users-v2.ddb_1
source:
  mongodb: {uri: "mongodb+srv://c.example.net/", database: demo, collection: users}
target:
  dynamodb: {table: users_v2, region: eu-west-1, endpoint: "http://127.0.0.1:5000"}
key:
  source: uid
  partition: pk
  sort: {attribute: sk, value: profile}
forward:
  - rename: {from: name, to: profile.full_name}
  - drop: {path: legacy}
  - set: {path: tags, value: [a, 1, 2.5, true, null, {k: v}]}
  - default: {path: status, value: active}
  - convert: {path: age, to: int64, on_error: default, default: 0}
  - compute: {path: domain, expr: 'doc.email.split("@")[1]'}
reverse:
  - drop: {path: domain}
  - move: {from: profile.full_name, to: name}
`
	spec, err := Parse("v.yaml", []byte(src))
	require.NoError(t, err)
	sum := sha256.Sum256([]byte(src))
	assert.Equal(t, hex.EncodeToString(sum[:])[:16], spec.Version)
	assert.Equal(t, "users-v2.ddb_1", spec.Name)
	assert.Equal(t, "v.yaml", spec.File)
	assert.Equal(t, Endpoint{Kind: StoreMongoDB, URI: "mongodb+srv://c.example.net/", Database: "demo", Collection: "users"}, spec.Source)
	assert.Equal(t, Endpoint{Kind: StoreDynamoDB, Table: "users_v2", Region: "eu-west-1", EndpointURL: "http://127.0.0.1:5000"}, spec.Target)
	assert.Equal(t, "dynamodb users_v2 (eu-west-1)", spec.Target.String())
	assert.Equal(t, Key{Source: "uid", Partition: "pk", SortAttribute: "sk", SortValue: "profile"}, spec.Key)
	assert.False(t, spec.ReverseDerived())
	assert.Equal(t, []StepInfo{
		{0, "rename", "name -> profile.full_name", 11},
		{1, "drop", "legacy", 12},
		{2, "set", `tags = ["a",1,2.5,true,null,{"k":"v"}]`, 13},
		{3, "default", `status = "active" if absent`, 14},
		{4, "convert", "age any -> int64, on_error default 0", 15},
		{5, "compute", `domain = doc.email.split("@")[1]`, 16},
	}, spec.Steps())
	assert.Equal(t, []StepInfo{
		{0, "drop", "domain", 18},
		{1, "move", "profile.full_name -> name", 19},
	}, spec.ReverseSteps())
	assert.Equal(t, bson.A{"a", int32(1), 2.5, true, nil, bson.D{{Key: "k", Value: "v"}}}, spec.forward[2].value)

	// A change to a comment is a new version.
	again, err := Parse("v.yaml", []byte(src+"# edited\n"))
	require.NoError(t, err)
	assert.NotEqual(t, spec.Version, again.Version)
}

func TestParseDefaultsAndDerivedReverse(t *testing.T) {
	spec := parseBody(t, `forward:
  - rename: {from: a, to: p.a}
  - convert: {path: n, from: date, to: string}
  - set: {path: v, value: 2}
  - compute: {path: c, expr: 'size(doc)'}
  - move: {from: p.b, to: b}
`)
	assert.Equal(t, Key{Source: "_id", Target: "_id"}, spec.Key)
	assert.True(t, spec.ReverseDerived())
	assert.Equal(t, []StepInfo{
		{0, "move", "b -> p.b", 0},
		{1, "drop", "c", 0},
		{2, "drop", "v", 0},
		{3, "convert", "n string -> date, on_error fail", 0},
		{4, "rename", "p.a -> a", 0},
	}, spec.ReverseSteps())
}

func TestParseEmptyExplicitReverse(t *testing.T) {
	spec := parseBody(t, "forward:\n  - drop: {path: a}\nreverse: []\n")
	assert.Empty(t, spec.ReverseSteps())
	got, err := spec.Reverse(D("_id", 1, "b", 2))
	require.NoError(t, err)
	assert.Equal(t, D("_id", 1, "b", 2), got)
}

func TestParseAliases(t *testing.T) {
	spec := parseBody(t, `forward:
  - set: &v {path: a, value: {x: [1, 2]}}
  - default: {path: b, value: *v}
reverse: []
`)
	got, err := spec.Forward(D("_id", 1))
	require.NoError(t, err)
	assert.Equal(t, D("_id", 1, "a", D("x", A(1, 2)), "b", D("path", "a", "value", D("x", A(1, 2)))), got)
}

// A constant document is copied into each output, so a caller that changes one output does
// not change the spec.
func TestConstantsAreNotShared(t *testing.T) {
	spec := oneStep(t, `set: {path: a, value: {x: [1]}}`)
	first, err := spec.Forward(D("_id", 1))
	require.NoError(t, err)
	first[1].Value.(bson.D)[0].Value.(bson.A)[0] = "changed"
	second, err := spec.Forward(D("_id", 2))
	require.NoError(t, err)
	assert.Equal(t, D("_id", 2, "a", D("x", A(1))), second)
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.yaml")
	require.NoError(t, os.WriteFile(path, []byte(body("forward:\n  - drop: {path: a}\n")), 0o600))
	_, err := Load(path)
	assert.ErrorIs(t, err, ErrIrreversible)
	assert.True(t, strings.HasPrefix(err.Error(), path+":5:5: forward[0].drop: "), err.Error())

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// Parse never panics and either returns a spec or at least one located problem.
func FuzzParse(f *testing.F) {
	f.Add([]byte(body(okStep)))
	f.Add([]byte(ddb("key: {partition: pk, sort: {attribute: sk, value: 1}}\nforward:\n  - convert: {path: a, to: int64, on_error: default, default: {x: [1]}}\nreverse: []\n")))
	f.Add([]byte(body("forward:\n  - set: &a {path: a, value: *a}\n")))
	f.Add([]byte(body("forward:\n  - compute: {path: a, expr: 'doc.x.split(\"@\")[1]'}\n  - {}\n")))
	f.Add([]byte("name: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := Parse("fuzz.yaml", data)
		if err == nil {
			require.NotNil(t, spec)
			require.NotEmpty(t, spec.Steps())
			return
		}
		var errs SpecErrors
		require.ErrorAs(t, err, &errs)
		require.NotEmpty(t, errs)
	})
}
