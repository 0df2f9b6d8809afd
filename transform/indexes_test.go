package transform

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseIndexes(t *testing.T) {
	s, err := Parse("t.yaml", []byte(body("indexes:\n  - {keys: {email: 1}, unique: true}\n  - name: by_city\n    keys: {profile.city: 1, age: -1}\n    sparse: true\n"+okStep)))
	require.NoError(t, err)
	require.Len(t, s.Indexes, 2)
	assert.Equal(t, Index{Keys: []IndexKey{{"email", 1}}, Unique: true}, s.Indexes[0])
	assert.Equal(t, Index{Name: "by_city", Keys: []IndexKey{{"profile.city", 1}, {"age", -1}}, Sparse: true}, s.Indexes[1])
	assert.Equal(t, "{keys: {profile.city: 1, age: -1}, name: by_city, sparse: true}", s.Indexes[1].String())

	s, err = Parse("t.yaml", []byte(body(okStep)))
	require.NoError(t, err)
	assert.Empty(t, s.Indexes)
}

func TestParseIndexesRejects(t *testing.T) {
	cases := []struct {
		name, yaml string
		err        error
		path, msg  string
	}{
		{"dynamodb target", ddb("key: {partition: pk}\nindexes: [{keys: {a: 1}}]\n" + okStep), ErrInvalidValue, "indexes", "only for a mongodb target"},
		{"not a list", body("indexes: {keys: {a: 1}}\n" + okStep), ErrInvalidValue, "indexes", "must be a list"},
		{"no keys", body("indexes: [{unique: true}]\n" + okStep), ErrRequired, "indexes[0].keys", "required"},
		{"empty keys", body("indexes: [{keys: {}}]\n" + okStep), ErrInvalidValue, "indexes[0].keys", "non-empty mapping"},
		{"bad order", body("indexes: [{keys: {a: 2}}]\n" + okStep), ErrInvalidValue, "indexes[0].keys.a", "1 (ascending) or -1"},
		{"text order", body("indexes: [{keys: {a: text}}]\n" + okStep), ErrInvalidValue, "indexes[0].keys.a", "1 (ascending) or -1"},
		{"dollar field", body("indexes: [{keys: {$a: 1}}]\n" + okStep), ErrInvalidPath, "indexes[0].keys.$a", "starting with $"},
		{"empty segment", body("indexes: [{keys: {a..b: 1}}]\n" + okStep), ErrInvalidPath, "indexes[0].keys.a..b", "empty segment"},
		{"unknown field", body("indexes: [{keys: {a: 1}, ttl: 5}]\n" + okStep), ErrUnknownKey, "indexes[0].ttl", "unknown index field"},
		{"unique not bool", body("indexes: [{keys: {a: 1}, unique: yes please}]\n" + okStep), ErrInvalidValue, "indexes[0].unique", "true or false"},
		{"bad name", body("indexes: [{keys: {a: 1}, name: \"a b\"}]\n" + okStep), ErrInvalidValue, "indexes[0].name", "must match"},
		{"duplicate name", body("indexes: [{keys: {a: 1}, name: x}, {keys: {b: 1}, name: x}]\n" + okStep), ErrDuplicateKey, "indexes[1].name", "also indexes[0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(c.yaml))
			require.Error(t, err)
			var errs SpecErrors
			require.True(t, errors.As(err, &errs))
			require.NotEmpty(t, errs)
			assert.ErrorIs(t, errs[0], c.err)
			assert.Equal(t, c.path, errs[0].Path)
			assert.Contains(t, errs[0].Msg, c.msg)
		})
	}
}
