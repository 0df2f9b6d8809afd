package transform

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

const dynamoHeader = `name: t
source: {mongodb: {uri: "mongodb://h/", database: d, collection: a}}
target: {dynamodb: {table: users, region: us-east-1}}
`

func TestKeyMapping(t *testing.T) {
	noop := "forward:\n  - set: {path: v, value: 1}\n"
	cases := []struct {
		name   string
		spec   string // full spec
		source bson.D
		target bson.D
	}{
		{"mongodb same field", testHeader + noop,
			D("_id", "k", "a", 1), D("_id", "k", "a", 1, "v", 1)},
		{"mongodb key moves to the target field in place", testHeader + "key: {source: uid, target: _id}\n" + noop,
			D("a", 1, "uid", "k", "b", 2), D("a", 1, "_id", "k", "b", 2, "v", 1)},
		{"mongodb key from _id to another field", testHeader + "key: {target: user_id}\n" + noop,
			D("_id", int64(5), "a", 1), D("user_id", int64(5), "a", 1, "v", 1)},
		{"dynamodb partition", dynamoHeader + "key: {partition: pk}\n" + noop,
			D("_id", "k", "a", 1), D("pk", "k", "a", 1, "v", 1)},
		{"dynamodb partition and sort", dynamoHeader + "key: {partition: pk, sort: {attribute: sk, value: profile}}\n" + noop,
			D("_id", "k", "a", 1), D("pk", "k", "sk", "profile", "a", 1, "v", 1)},
		{"dynamodb partition is the source field", dynamoHeader + "key: {source: id, partition: id, sort: {attribute: sk, value: 3}}\n" + noop,
			D("a", 1, "id", "k"), D("a", 1, "id", "k", "sk", 3, "v", 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := Parse("t.yaml", []byte(tc.spec))
			require.NoError(t, err)
			got, err := spec.Forward(tc.source)
			require.NoError(t, err)
			assert.Equal(t, tc.target, got)
			back, err := spec.Reverse(got)
			require.NoError(t, err)
			assert.Equal(t, tc.source, back, "the key returns to its position")
		})
	}
}

func TestKeyErrors(t *testing.T) {
	sortSpec := dynamoHeader + "key: {partition: pk, sort: {attribute: sk, value: 2}}\nforward:\n  - set: {path: v, value: 1}\n"
	cases := []struct {
		name    string
		spec    string
		reverse bool
		doc     bson.D
		err     error
		field   string
	}{
		{"forward without source key", testHeader + "forward:\n  - set: {path: v, value: 1}\n", false,
			D("a", 1), ErrMissingKey, "_id"},
		{"forward onto an existing target field", testHeader + "key: {source: uid}\nforward:\n  - set: {path: v, value: 1}\n", false,
			D("_id", 1, "uid", 2), ErrKeyConflict, "_id"},
		{"forward onto an existing sort attribute", sortSpec, false,
			D("_id", 1, "sk", 2), ErrKeyConflict, "sk"},
		{"reverse without target key", testHeader + "forward:\n  - set: {path: v, value: 1}\n", true,
			D("a", 1), ErrMissingKey, "_id"},
		{"reverse without partition", sortSpec, true,
			D("_id", 1, "sk", 2), ErrMissingKey, "pk"},
		{"reverse without sort attribute", sortSpec, true,
			D("pk", 1, "v", 1), ErrMissingKey, "sk"},
		{"reverse with another sort value", sortSpec, true,
			D("pk", 1, "sk", "2", "v", 1), ErrKeyConflict, "sk"},
		{"reverse onto an existing source field", sortSpec, true,
			D("pk", 1, "sk", 2, "_id", 3), ErrKeyConflict, "_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := Parse("t.yaml", []byte(tc.spec))
			require.NoError(t, err)
			run := spec.Forward
			dir := "forward"
			if tc.reverse {
				run, dir = spec.Reverse, "reverse"
			}
			got, err := run(tc.doc)
			assert.Nil(t, got)
			require.ErrorIs(t, err, tc.err)
			var se *StepError
			require.ErrorAs(t, err, &se)
			assert.Equal(t, StepError{Direction: dir, Step: -1, Kind: "key", Path: tc.field}, StepError{
				Direction: se.Direction, Step: se.Step, Kind: se.Kind, Path: se.Path})
			assert.Contains(t, err.Error(), dir+" key "+tc.field+": ")
		})
	}
}

// DynamoDB has one number type: a sort value stored as int32 2 may come back as int64 or double.
func TestSortValueComparesNumbersByValue(t *testing.T) {
	spec, err := Parse("t.yaml", []byte(dynamoHeader+"key: {partition: pk, sort: {attribute: sk, value: 2}}\nforward:\n  - set: {path: v, value: 1}\n"))
	require.NoError(t, err)
	for _, sk := range []any{int32(2), int64(2), 2.0} {
		got, err := spec.Reverse(D("pk", "k", "sk", sk, "v", 1))
		require.NoError(t, err, "%T", sk)
		assert.Equal(t, D("_id", "k"), got)
	}
}

func TestStepErrorNamesTheStep(t *testing.T) {
	spec := parseBody(t, `forward:
  - rename: {from: a, to: b}
  - convert: {path: b, from: int32, to: int64}
  - convert: {path: p.n, from: string, to: int32}
reverse: []
`)
	_, err := spec.Forward(D("_id", 1, "a", 1, "p", D("n", "x")))
	var se *StepError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 2, se.Step)
	assert.Equal(t, "convert", se.Kind)
	assert.Equal(t, "p.n", se.Path)
	assert.ErrorIs(t, err, ErrConvert)
	assert.EqualError(t, err, `forward[2] convert p.n: conversion failed: string "x" to int32: not an integer in range`)

	spec = parseBody(t, "forward:\n  - rename: {from: a, to: b}\n")
	_, err = spec.Reverse(D("_id", 1, "a", 1, "b", 2))
	require.ErrorAs(t, err, &se)
	assert.Equal(t, StepError{Direction: "reverse", Step: 0, Kind: "rename", Path: "a", Err: se.Err}, *se)
	assert.ErrorIs(t, err, ErrPathConflict)
}
