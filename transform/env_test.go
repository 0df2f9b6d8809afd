package transform

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// env is a fake environment for WithLookupEnv.
func env(kv ...string) ParseOption {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return WithLookupEnv(func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	})
}

func TestExpandEnv(t *testing.T) {
	lookup := func(name string) (string, bool) {
		v, ok := map[string]string{"A": "alpha", "B_2": "b", "_u": "under", "EMPTY": "", "REF": "${A}"}[name]
		return v, ok
	}
	cases := []struct {
		name, in, want, err string
	}{
		{"no reference", "mongodb://h/", "mongodb://h/", ""},
		{"whole value", "${A}", "alpha", ""},
		{"inside a value", "mongodb://${A}:${B_2}@h/", "mongodb://alpha:b@h/", ""},
		{"adjacent", "${A}${_u}", "alphaunder", ""},
		{"escape", "$${A}", "${A}", ""},
		{"escape then reference", "$${A}${A}", "${A}alpha", ""},
		{"dollar before an escape", "$$${A}", "$${A}", ""},
		{"other dollars", "$A $ $$ a$b ${A}$", "$A $ $$ a$b alpha$", ""},
		{"values are not expanded again", "${REF}", "${A}", ""},
		{"unset", "x${NOPE}y", "", "environment variable NOPE is not set"},
		{"empty", "${EMPTY}", "", "environment variable EMPTY is set but empty"},
		{"unclosed", "pa${ss", "", "malformed reference at byte 2 of the value: ${ has no closing }"},
		{"empty name", "${}", "", "malformed reference at byte 0"},
		{"digit first", "${1A}", "", "want ${NAME}"},
		{"default syntax", "${A:-x}", "", "want ${NAME}"},
		{"dash", "${A-B}", "", "want ${NAME}"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := expandEnv(tc.in, lookup)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseExpandsEnv(t *testing.T) {
	src := `name: ${NAME}
# ${UNSET} in a comment is not expanded
source: {mongodb: {uri: "mongodb://${DB_USER}:${DB_PASS}@db.example.net/?authSource=admin", database: demo, collection: users}}
target:
  mongodb:
    uri: ${TARGET_URI}
    database: demo
    collection: ${COLL}
forward:
  - set:
      path: n
      value: ${N}
  - set: {path: d, value: {"k${KEY}": "${N}", list: ["${N}", "$${N}"]}}
  - compute: {path: c, expr: '"$${literal}"'}
`
	spec, err := Parse("e.yaml", []byte(src), env("NAME", "users", "DB_USER", "app", "DB_PASS", "pa:ss",
		"TARGET_URI", "mongodb+srv://u:p@new.example.net/", "COLL", "users_v2", "N", "5", "KEY", "k"))
	require.NoError(t, err)
	assert.Equal(t, "users", spec.Name)
	assert.Equal(t, "mongodb://app:pa:ss@db.example.net/?authSource=admin", spec.Source.URI)
	assert.Equal(t, "mongodb+srv://u:p@new.example.net/", spec.Target.URI)
	assert.Equal(t, "users_v2", spec.Target.Collection)

	got, err := spec.Forward(D("_id", 1))
	require.NoError(t, err)
	// An expanded value is always a string; keys are not expanded.
	assert.Equal(t, D("_id", 1, "n", "5", "d", D("k${KEY}", "5", "list", A("5", "${N}")), "c", "${literal}"), got)

	// The stored text keeps every reference and no value.
	assert.Equal(t, src, spec.Redacted())
}

func TestParseEnvErrors(t *testing.T) {
	cases := []struct {
		name      string
		yaml      string
		line, col int
		path, msg string
	}{
		{"unset in a uri", "name: t\n" +
			`source: {mongodb: {uri: "mongodb://u:${DB_PASS}@h/", database: d, collection: a}}` + "\n" + tgtLine + okStep,
			2, 25, "source.mongodb.uri", "environment variable DB_PASS is not set"},
		{"unset in a constant", body("forward:\n  - set: {path: a, value: [1, {x: '${NOPE}'}]}\n"),
			5, 35, "forward[0].set.value[1].x", "environment variable NOPE is not set"},
		{"empty", body("forward:\n  - set:\n      path: a\n      value: ${EMPTY}\n"),
			7, 14, "forward[0].set.value", "environment variable EMPTY is set but empty"},
		{"malformed", "name: t\n" + `source: {mongodb: {uri: "mongodb://u:p${ss@h/", database: d, collection: a}}` + "\n" + tgtLine + okStep,
			2, 25, "source.mongodb.uri", "malformed reference at byte 13 of the value"},
		{"in a path", body("forward:\n  - drop: {path: '${P'}\nreverse: []\n"),
			5, 18, "forward[0].drop.path", "malformed reference"},
		{"in a CEL expression", body("forward:\n  - compute: {path: a, expr: '\"${A}\"'}\n"),
			5, 30, "forward[0].compute.expr", "not expanded here"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("spec.yaml", []byte(tc.yaml), env("A", "a", "EMPTY", ""))
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrEnv)
			var errs SpecErrors
			require.ErrorAs(t, err, &errs)
			require.Len(t, errs, 1, "%v", err)
			assert.Equal(t, fmt.Sprintf("spec.yaml:%d:%d: %s", tc.line, tc.col, tc.path), errs[0].Error()[:strings.Index(errs[0].Error(), tc.path)+len(tc.path)])
			assert.Contains(t, errs[0].Msg, tc.msg)
		})
	}
}

// A value from the environment is a string, however YAML-like it is: it cannot add keys,
// steps or other types.
func TestEnvCannotInjectStructure(t *testing.T) {
	inject := "x\"}, collection: other}}\nforward:\n  - drop: {path: a}\n#"
	src := body("forward:\n  - set:\n      path: a\n      value: ${V}\n  - set: {path: b, value: \"${V}\"}\n  - set: {path: c, value: '${T}'}\n")
	src = strings.Replace(src, `database: d, collection: b`, `database: d, collection: "${V}"`, 1)
	spec, err := Parse("i.yaml", []byte(src), env("V", inject, "T", "true"))
	require.NoError(t, err)
	assert.Equal(t, inject, spec.Target.Collection)
	require.Len(t, spec.Steps(), 3)
	got, err := spec.Forward(D("_id", 1))
	require.NoError(t, err)
	assert.Equal(t, D("_id", 1, "a", inject, "b", inject, "c", "true"), got)
}

func TestLoadWithEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.yaml")
	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(body(okStep), `"mongodb://h/", database: d, collection: a`,
		`"mongodb://u:${PW}@h/", database: d, collection: a`, 1)), 0o600))
	spec, err := Load(path, env("PW", "secret"))
	require.NoError(t, err)
	assert.Equal(t, "mongodb://u:secret@h/", spec.Source.URI)

	_, err = Load(path, WithLookupEnv(nil))
	assert.ErrorIs(t, err, ErrEnv)
	assert.Contains(t, err.Error(), path+":2:25: source.mongodb.uri: environment variable PW is not set")
}
