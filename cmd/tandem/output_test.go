package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/flags"
)

// tandemSplit runs one command in-process with stdout and stderr kept apart, as a script
// piping stdout into a JSON parser sees them.
func tandemSplit(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	var out, errOut syncBuffer
	cmd := newRootCmd(&out, &errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	if err != nil {
		fmt.Fprintln(&errOut, "tandem:", errorLine(err))
	}
	return out.String(), errOut.String(), exitStatus(err)
}

// jsonValues decodes every JSON value in s, one after the other, and fails the test when s is
// anything else: one value is a JSON document, several are JSON lines.
func jsonValues(t *testing.T, s string) []map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	var vals []map[string]any
	for {
		var v map[string]any
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "not JSON:\n%s", s)
		vals = append(vals, v)
	}
	require.NotEmpty(t, vals, "no JSON at all")
	return vals
}

// TestOutputFlagRefusesUnknownValuesAlike: every command checks --output with the one
// helper: a bad value is a usage error naming the flag, the value and the accepted ones.
func TestOutputFlagRefusesUnknownValuesAlike(t *testing.T) {
	t.Setenv(envAdminURL, "http://127.0.0.1:1") // nothing is called
	for _, args := range [][]string{
		{"flags", "get", "m", "--output", "xml"},
		{"history", "m", "--output", "yaml"},
		{"validate", "x.yaml", "--output", "csv"},
		{"cdc", "status", "m", "--output", "wide"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			_, stderr, status := tandemSplit(t, args...)
			assert.Equal(t, exitUsage, status, stderr)
			assert.Contains(t, stderr, fmt.Sprintf(`invalid argument %q for "--output" flag: want table or json`, args[len(args)-1]))
		})
	}
	// Where --output text existed, text stays an alias of table, and is named as accepted.
	_, stderr, status := tandemSplit(t, "backfill", "run", "x.yaml", "--output", "tabular")
	assert.Equal(t, exitUsage, status)
	assert.Contains(t, stderr, `invalid argument "tabular" for "--output" flag: want table or json or text`)
	_, stderr, status = tandemSplit(t, "flags", "get", "m", "--output", "text")
	assert.Equal(t, exitUsage, status, "text is not accepted where it never was: %s", stderr)
}

// TestJSONIsTheOlderSpellingOfOutputJSON: --json still prints the JSON that --output json
// prints, on stdout untouched, and tells on stderr that it is deprecated; it cannot be
// combined with a contradicting --output, nor does it show in the help.
func TestJSONIsTheOlderSpellingOfOutputJSON(t *testing.T) {
	a := startAdminAPI(t)
	m := adminTestMigration

	newer, stderr, status := tandemSplit(t, "flags", "get", m, "--output", "json")
	require.Equal(t, exitOK, status, stderr)
	assert.Empty(t, stderr)
	older, stderr, status := tandemSplit(t, "flags", "get", m, "--json")
	require.Equal(t, exitOK, status, stderr)
	assert.Equal(t, newer, older, "stdout is the same JSON, with no notice in it")
	var v flags.Values
	require.NoError(t, json.Unmarshal([]byte(older), &v))
	assert.Equal(t, a.values(t), v)
	assert.Equal(t, "tandem: --json is deprecated and will be removed: use --output json\n", stderr)

	_, stderr, status = tandemSplit(t, "flags", "get", m, "--json", "--output", "json")
	assert.Equal(t, exitOK, status, "agreeing spellings are fine: %s", stderr)
	for _, args := range [][]string{
		{"flags", "get", m, "--json", "--output", "table"},
		{"flags", "get", m, "--output", "table", "--json"},
	} {
		_, stderr, status = tandemSplit(t, args...)
		assert.Equal(t, exitUsage, status, "%v: %s", args, stderr)
		assert.Contains(t, stderr, "pass one of them")
	}
	help, _, _ := tandemSplit(t, "flags", "get", "--help")
	assert.Contains(t, help, "--output table|json")
	assert.NotContains(t, help, "--json")
}

// TestOutputJSONOfTheStoreCommands: validate, backfill run (dry run and copy) and cdc status
// print valid JSON with --output json: one document, except backfill run's copy, which
// streams JSON lines ending with its summary; --output text is still accepted by backfill run.
func TestOutputJSONOfTheStoreCommands(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store, err := embedmongo.Start(ctx, embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	client, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	const n = 30
	docs := make([]any, n)
	for i := range docs {
		docs[i] = e2eUser(fmt.Sprintf("k%03d", i), i)
	}
	_, err = client.Database("out").Collection("users").InsertMany(ctx, docs)
	require.NoError(t, err)
	spec := e2eSpec(t, store.URI(), store.URI(), "out")

	t.Run("validate", func(t *testing.T) {
		stdout, stderr, status := tandemSplit(t, "validate", spec, "--sample", "5", "--output", "json")
		require.Equal(t, exitOK, status, stderr)
		vals := jsonValues(t, stdout)
		require.Len(t, vals, 1, "one document")
		v := vals[0]
		assert.Equal(t, true, v["ok"])
		assert.Equal(t, "users-v2", v["migration"])
		assert.NotEmpty(t, v["forward"])
		assert.Equal(t, map[string]any{"source": "mongodb out.users", "documents": 5.0, "exact": 5.0, "differ": []any{}, "failed": []any{}}, v["sample"])

		bad := filepath.Join(t.TempDir(), "bad.yaml")
		require.NoError(t, os.WriteFile(bad, []byte("name: bad\nforward:\n  - rename: {from: a, to: \"\"}\n"), 0o600))
		stdout, _, status = tandemSplit(t, "validate", bad, "--output", "json")
		assert.Equal(t, exitFailed, status, "problems exit 1 with JSON as well")
		vals = jsonValues(t, stdout)
		require.Len(t, vals, 1)
		assert.Equal(t, false, vals[0]["ok"])
		problems, _ := vals[0]["problems"].([]any)
		require.NotEmpty(t, problems)
		assert.Contains(t, stdout, `"path": "forward[0].rename.to"`)
	})

	t.Run("backfill run --dry-run", func(t *testing.T) {
		stdout, stderr, status := tandemSplit(t, "backfill", "run", spec, "--dry-run", "--output", "json")
		require.Equal(t, exitOK, status, stderr)
		vals := jsonValues(t, stdout)
		require.Len(t, vals, 1, "a dry run is one document")
		assert.Equal(t, float64(n), vals[0]["estimate"])
	})

	t.Run("cdc status before any", func(t *testing.T) {
		stdout, stderr, status := tandemSplit(t, "cdc", "status", "users-v2", "--catalog", store.URI(), "--output", "json")
		require.Equal(t, exitOK, status, stderr)
		assert.JSONEq(t, `{"migration":"users-v2","paths":[]}`, stdout)
	})

	t.Run("backfill run", func(t *testing.T) {
		stdout, stderr, status := tandemSplit(t, "backfill", "run", spec, "--output", "json", "--partitions", "2")
		require.Equal(t, exitOK, status, stderr)
		vals := jsonValues(t, stdout)
		for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
			assert.True(t, json.Valid([]byte(l)), "each line is one JSON value: %s", l)
		}
		var sum backfill.Summary
		last, _ := json.Marshal(vals[len(vals)-1])
		require.NoError(t, json.Unmarshal(last, &sum))
		assert.Equal(t, int64(n), sum.Progress.Copied, "the last line is the summary")

		// text, the older spelling of table: the run finds everything copied.
		stdout, stderr, status = tandemSplit(t, "backfill", "run", spec, "--output", "text")
		require.Equal(t, exitOK, status, stderr)
		assert.Contains(t, stdout, "backfill users-v2 done:")
		assert.False(t, json.Valid(bytes.TrimSpace([]byte(stdout))))
	})
}
