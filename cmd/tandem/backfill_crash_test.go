package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/transform"
	"github.com/tandemdb/tandem/verify"
)

// startMain starts the tandem binary's main (this test binary, re-executed) with args.
func startMain(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	j, err := json.Marshal(args)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TANDEM_RUN_MAIN=1", "TANDEM_ARGS_JSON="+string(j))
	cmd.Dir = t.TempDir()
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// TestBackfillRunSurvivesSIGKILL kills `tandem backfill run` with SIGKILL at random points ten
// times, each time starting it again, then lets it finish: a full verification finds nothing
// missing, extra or different, and the catalog's count of copied documents equals the source's.
func TestBackfillRunSurvivesSIGKILL(t *testing.T) {
	store, err := embedmongo.Start(context.Background(), embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	ctx := context.Background()
	client, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	require.NoError(t, err)
	defer client.Disconnect(ctx)
	const n = 600 // FerretDB in this race-instrumented process copies ~50 documents/s
	docs := make([]any, n)
	for i := range docs {
		docs[i] = e2eUser(fmt.Sprintf("k%05d", i), i)
	}
	_, err = client.Database("crash").Collection("users").InsertMany(ctx, docs)
	require.NoError(t, err)
	specPath := e2eSpec(t, store.URI(), store.URI(), "crash")
	args := []string{"backfill", "run", specPath, "--batch", "20", "--workers", "2", "--partitions", "6", "--lease", "3s", "--output", "json"}

	cat, err := catalog.Open(ctx, client)
	require.NoError(t, err)
	copied := func() int64 {
		p, err := backfill.Status(ctx, cat, "users-v2")
		if err != nil {
			return -1 // no plan yet
		}
		return p.Copied
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	const kills = 10
	for i := range kills {
		cmd := startMain(t, args...)
		if i%3 == 0 {
			// Every third run is killed at a random moment of its start-up or planning, or
			// of its wait for the dead runs' leases (3s).
			time.Sleep(time.Duration(rng.IntN(4000)) * time.Millisecond)
		} else {
			// The others once they copy again (a batch has been checkpointed), a random
			// moment later: inside a batch, between its write and its re-check, or at a
			// checkpoint.
			before := copied()
			deadline := time.Now().Add(20 * time.Second)
			for copied() <= before && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Logf("kill %d: the run had already ended: %v", i+1, err)
		}
		_ = cmd.Wait()
		t.Logf("kill %d: %v; %d documents copied so far", i+1, cmd.ProcessState, copied())
	}
	// The bound is against a hang: under the race detector on a loaded machine the embedded
	// FerretDB copies a few documents a second.
	code, stdout, stderr := runMainWithin(t, 8*time.Minute, nil, args...)
	require.Equal(t, 0, code, "the last run finishes\nstdout:\n%s\nstderr:\n%s", stdout, stderr)

	// The full comparison: transform(old) against new for every key, both ways.
	spec, err := transform.Load(specPath)
	require.NoError(t, err)
	old := adapters.NewMongoStore(client.Database("crash").Collection("users"))
	target := adapters.NewMongoStore(client.Database("crash").Collection("users_v2"))
	sum, err := verify.Run(ctx, verify.Config{Migration: spec.Name, Old: old, New: target, Forward: spec.Forward, Catalog: cat})
	require.NoError(t, err)
	assert.True(t, sum.Clean, "nothing missing, extra or different: %+v", sum)
	assert.Equal(t, int64(n), sum.Keys)
	count, err := client.Database("crash").Collection("users_v2").CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.Equal(t, int64(n), count)
	p, err := backfill.Status(ctx, cat, spec.Name)
	require.NoError(t, err)
	assert.Equal(t, p.Partitions, p.PartitionsDone)
	assert.Equal(t, int64(n), p.Copied, "the catalog counts each document once, whatever was copied twice")
	assert.Zero(t, p.DeadLettered)
}
