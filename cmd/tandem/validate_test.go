package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/embedmongo"
)

func runTandem(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out syncBuffer
	cmd := newRootCmd(&out, &out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestValidateTheExample(t *testing.T) {
	out, err := runTandem(t, "validate", "../../examples/users-v2.yaml")
	require.NoError(t, err, out)
	assert.Contains(t, out, "ok — migration users-v2, spec version ")
	assert.Contains(t, out, "mongodb demo.users → mongodb demo.users_v2")
	assert.Contains(t, out, "reverse (derived)")
}

func TestValidateReportsEveryProblemWithLineAndPath(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(spec, []byte(`name: bad
source:
  mongodb: {uri: "mongodb://127.0.0.1:1/", database: d, collection: c}
target:
  mongodb: {uri: "mongodb://127.0.0.1:1/", database: d, collection: c2}
forward:
  - rename: {from: a, to: ""}
  - explode: {path: x}
  - compute: {path: y, expr: 'doc.a +'}
  - drop: {path: z}
`), 0o600))
	out, err := runTandem(t, "validate", spec)
	require.Error(t, err)
	assert.True(t, errors.Is(err, errProblems))
	assert.Contains(t, out, "bad.yaml:7:")
	assert.Contains(t, out, "forward[0].rename.to")
	assert.Contains(t, out, "bad.yaml:8:")
	assert.Contains(t, out, "explode")
	assert.Contains(t, out, "bad.yaml:9:")
	assert.Contains(t, out, "forward[2].compute.expr")

	irreversible := filepath.Join(t.TempDir(), "irreversible.yaml")
	require.NoError(t, os.WriteFile(irreversible, []byte(`name: irreversible
source:
  mongodb: {uri: "mongodb://127.0.0.1:1/", database: d, collection: c}
target:
  mongodb: {uri: "mongodb://127.0.0.1:1/", database: d, collection: c2}
forward:
  - rename: {from: a, to: b}
  - drop: {path: z}
`), 0o600))
	out, err = runTandem(t, "validate", irreversible)
	require.ErrorIs(t, err, errProblems)
	assert.Contains(t, out, "forward[1]", "the irreversible drop without a reverse is named")
}

func TestValidateSampleFindsRoundTripProblems(t *testing.T) {
	store, err := embedmongo.Start(context.Background(), embedmongo.Options{})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	client, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	require.NoError(t, err)
	defer client.Disconnect(ctx)
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	users := client.Database("demo").Collection("users")
	_, err = users.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: "user-1"}, {Key: "name", Value: "A"}, {Key: "email", Value: "a@example.com"}, {Key: "age", Value: int32(30)}, {Key: "created", Value: created}},
		bson.D{{Key: "_id", Value: "user-2"}, {Key: "name", Value: "B"}, {Key: "email", Value: "b@example.com"}, {Key: "age", Value: int32(31)}, {Key: "created", Value: created}},
		// age is not an int32: the forward convert fails.
		bson.D{{Key: "_id", Value: "user-3"}, {Key: "name", Value: "C"}, {Key: "email", Value: "c@example.com"}, {Key: "age", Value: "thirty"}, {Key: "created", Value: created}},
		// schema_version already present: set overwrites it and the reverse drops it.
		bson.D{{Key: "_id", Value: "user-4"}, {Key: "name", Value: "D"}, {Key: "email", Value: "d@example.com"}, {Key: "age", Value: int32(33)}, {Key: "created", Value: created}, {Key: "schema_version", Value: int32(1)}},
	})
	require.NoError(t, err)

	example, err := os.ReadFile("../../examples/users-v2.yaml")
	require.NoError(t, err)
	spec := filepath.Join(t.TempDir(), "users.yaml")
	require.NoError(t, os.WriteFile(spec, []byte(strings.ReplaceAll(string(example), "mongodb://127.0.0.1:27017/", store.URI())), 0o600))

	out, err := runTandem(t, "validate", spec, "--sample", "10")
	require.ErrorIs(t, err, errProblems, out)
	assert.Contains(t, out, "sampled 4 document(s) from mongodb demo.users: 2 round-trip exactly, 1 differ, 1 fail to transform")
	assert.Contains(t, out, `differs   "user-4": schema_version: missing`)
	assert.Contains(t, out, `fails     "user-3": forward[3] convert age`)

	_, err = users.DeleteMany(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{"user-3", "user-4"}}}}})
	require.NoError(t, err)
	out, err = runTandem(t, "validate", spec, "--sample", "10")
	require.NoError(t, err, out)
	assert.Contains(t, out, "2 round-trip exactly, 0 differ, 0 fail")
}

// TestValidateFindsPathConflictsWithoutSample: a step that writes a path an earlier step moved
// away is found from the spec alone, with its line and both steps named.
func TestValidateFindsPathConflictsWithoutSample(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "conflict.yaml")
	require.NoError(t, os.WriteFile(spec, []byte(`name: conflict
source:
  mongodb: {uri: "mongodb://127.0.0.1:1/", database: d, collection: c}
target:
  mongodb: {uri: "mongodb://127.0.0.1:1/", database: d, collection: c2}
forward:
  - move: {from: email, to: profile.email}
  - set: {path: email, value: "x"}
`), 0o600))
	out, err := runTandem(t, "validate", spec)
	require.ErrorIs(t, err, errProblems)
	assert.Contains(t, out, "conflict.yaml:8:")
	assert.Contains(t, out, "forward[1].set.path: path conflict: forward[0] moved email away")
}

// TestValidateNamesTheInvariantThatDoesNotCompile: the verify section is checked with the
// rest of the spec: an invariant that does not compile and a mismatch budget that is not a
// number are each named with their line.
func TestValidateNamesTheInvariantThatDoesNotCompile(t *testing.T) {
	spec := filepath.Join(t.TempDir(), "verify.yaml")
	require.NoError(t, os.WriteFile(spec, []byte(`name: v
source:
  mongodb: {uri: "mongodb://127.0.0.1:1/", database: d, collection: c}
target:
  mongodb: {uri: "mongodb://127.0.0.1:1/", database: d, collection: c2}
forward:
  - rename: {from: a, to: b}
verify:
  mismatch_budget: a few
  invariants:
    - name: fine
      expr: 'doc.b != ""'
    - name: broken
      expr: 'doc.b.startsWith('
`), 0o600))
	out, err := runTandem(t, "validate", spec)
	require.ErrorIs(t, err, errProblems)
	assert.Contains(t, out, `verify.yaml:9:20: verify.mismatch_budget: must be a whole number (a count of confirmed mismatches) of 0 or more; got "a few"`)
	assert.Contains(t, out, "verify.yaml:14:13: verify.invariants[1].expr: invariant broken: CEL expression failed")
	assert.NotContains(t, out, "invariants[0]")
}
