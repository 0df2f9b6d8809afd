package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/transform"
)

// backfillCLI runs `tandem backfill ARGS…` in-process and returns its output (stdout and
// stderr) and exit status. Until the root command has a backfill command with these
// subcommands, a parent made here holds them.
func backfillCLI(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out syncBuffer
	root := newRootCmd(&out, &out)
	if sub, _, err := root.Find([]string{"backfill", "status"}); err != nil || sub.Name() != "status" {
		parent := &cobra.Command{Use: "backfill", Short: "Run and control a migration's backfill", Args: cobra.NoArgs}
		parent.AddCommand(newBackfillControlCmds()...)
		usageArgs(parent)
		root.AddCommand(parent)
	}
	root.SetArgs(append([]string{"backfill"}, args...))
	err := root.ExecuteContext(context.Background())
	if err != nil {
		fmt.Fprintln(&out, "tandem:", errorLine(err))
	}
	return out.String(), exitStatus(err)
}

// TestBackfillControlCommandsSteerARunningBackfill runs `tandem proxy --spec` and a backfill of
// the same migration on the same catalog, and drives it with the CLI: status before a plan,
// pause before the copy starts, the paused runner in the status, a rate limit, resume, and
// status --watch until the copy is done; then the audit trail and the refusals.
func TestBackfillControlCommandsSteerARunningBackfill(t *testing.T) {
	ctx := context.Background()
	store, err := embedmongo.Start(ctx, embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	client, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	const n = 120
	users := client.Database("bfctl").Collection("users")
	docs := make([]any, n)
	for i := range docs {
		docs[i] = e2eUser(fmt.Sprintf("user-%04d", i), i)
	}
	_, err = users.InsertMany(ctx, docs)
	require.NoError(t, err)

	specPath := e2eSpec(t, store.URI(), store.URI(), "bfctl")
	_, adminURL, _, stop := runCommand(t, "proxy", "--upstream", store.URI(), "--spec", specPath,
		"--journal-embedded", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--admin-token-file", tokenFile(t))
	t.Setenv(envAdminURL, adminURL)
	t.Setenv(envAdminToken, e2eToken)
	t.Setenv(envAdminUser, "olga")

	out, code := backfillCLI(t, "status", "users-v2")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "no backfill plan")
	assert.Contains(t, out, "backfill_not_started")

	// The backfill: the proxy's catalog (tandem_meta on the upstream) and the spec's stores.
	cat, err := catalog.Open(ctx, client)
	require.NoError(t, err)
	spec, err := transform.Load(specPath)
	require.NoError(t, err)
	var reconverged atomic.Int64
	cfg := backfill.Config{
		Migration: "users-v2", Spec: spec, Catalog: cat, Owner: "test-runner",
		Old: adapters.NewMongoStore(users), New: adapters.NewMongoStore(client.Database("bfctl").Collection("users_v2")),
		// Nothing writes to the source during the copy, so the re-check converges no key.
		Reconverge: func(context.Context, adapters.Key) error { reconverged.Add(1); return nil },
		// The default lease (30s): renewals then have 10s to land on a busy FerretDB.
		Workers: 2, Partitions: 4, Batch: 20, Chunk: 10, Poll: 100 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler),
	}
	_, err = backfill.Prepare(ctx, cfg)
	require.NoError(t, err)

	out, code = backfillCLI(t, "pause", "users-v2", "--reason", "not during the batch window")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "users-v2: backfill paused")
	assert.Regexp(t, `paused\s+yes`, out)
	assert.Regexp(t, `partitions\s+0/\d+ done`, out)

	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute) // the backfill waits out catalog trouble: bound it
	defer cancel()
	ran := make(chan error, 1)
	go func() {
		_, err := backfill.Run(runCtx, cfg)
		ran <- err
	}()

	// Paused before the first chunk: the runner reports itself and copies nothing.
	var p backfill.Progress
	require.Eventually(t, func() bool {
		out, code := backfillCLI(t, "status", "users-v2", "--output", "json")
		return code == 0 && json.Unmarshal([]byte(out), &p) == nil && len(p.Runners) == 1
	}, 20*time.Second, 100*time.Millisecond, "the paused runner shows in the status")
	assert.Equal(t, backfill.StatePaused, p.State)
	assert.Equal(t, "test-runner", p.Runners[0].Owner)
	assert.Zero(t, p.Copied, "nothing is copied while paused")
	out, code = backfillCLI(t, "status", "users-v2")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "backfill of users-v2: paused")
	assert.Regexp(t, `test-runner\s+\S+\s+\d+\s+0\s+`, out, "the runners table")

	out, code = backfillCLI(t, "rate", "users-v2", "--docs", "60", "--bytes", "unlimited", "--reason", "gently")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "users-v2: backfill limit set to 60 docs/s, unlimited bytes/s")
	assert.Regexp(t, `limits\s+60 docs/s, unlimited bytes/s`, out)
	plan, err := cat.BackfillPlan(ctx, "users-v2")
	require.NoError(t, err)
	assert.Equal(t, 60.0, plan.Control.Rate)
	assert.True(t, plan.Control.Paused)

	out, code = backfillCLI(t, "resume", "users-v2", "--reason", "window over")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "users-v2: backfill resumed")
	assert.Regexp(t, `paused\s+no`, out)

	out, code = backfillCLI(t, "status", "users-v2", "--watch", "--interval", "300ms")
	require.Equal(t, 0, code, out)
	blocks := strings.Count(out, "backfill of users-v2: ")
	assert.Greater(t, blocks, 1, "--watch shows the progress until done: %s", out)
	assert.Contains(t, out, "(every 300ms, Ctrl-C to stop)")
	last := out[strings.LastIndex(out, "backfill of users-v2: "):]
	assert.Contains(t, last, "backfill of users-v2: done")
	assert.Regexp(t, fmt.Sprintf(`copied\s+%d of ~%d \(100\.0%%\)`, n, n), last)
	assert.NotContains(t, out, "\x1b[", "no terminal: plain blocks, no escape codes")
	select {
	case err := <-ran:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the backfill did not return after it was done")
	}
	copied, err := client.Database("bfctl").Collection("users_v2").CountDocuments(ctx, map[string]any{})
	require.NoError(t, err)
	assert.Equal(t, int64(n), copied)
	assert.Zero(t, reconverged.Load())

	// The audit trail, through the CLI's history.
	out, code = tandemHistory(t)
	require.Equal(t, 0, code, out)
	assert.Regexp(t, `api:olga\s+backfill paused true → false\s+window over`, out)
	assert.Regexp(t, `api:olga\s+backfill bytes_rate unlimited → unlimited\s+gently`, out)
	assert.Regexp(t, `api:olga\s+backfill rate unlimited → 60\s+gently`, out)
	assert.Regexp(t, `api:olga\s+backfill paused false → true\s+not during the batch window`, out)

	// Refusals: exit 1 with the server's message and code.
	out, code = backfillCLI(t, "pause", "users-v2", "--reason", "too late")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "backfill_finished")
	out, code = backfillCLI(t, "resume", "users-v2", "--reason", "not paused")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "backfill_not_paused")
	out, code = backfillCLI(t, "pause", "nobody", "--reason", "r")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "backfill_not_started")
	t.Setenv(envAdminToken, "wrong")
	out, code = backfillCLI(t, "rate", "users-v2", "--docs", "10", "--reason", "r")
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "unauthorized")
	t.Setenv(envAdminToken, e2eToken)

	out, code = backfillCLI(t, "status", "users-v2", "--output", "json")
	require.Equal(t, 0, code, out)
	require.NoError(t, json.Unmarshal([]byte(out), &p), "--output json prints the API's JSON")
	assert.Equal(t, 60.0, p.Rate, "a refused change changed nothing")
	assert.Equal(t, backfill.StateDone, p.State)
	require.NoError(t, stop())
}

// tandemHistory prints the test migration's audit trail with `tandem history`.
func tandemHistory(t *testing.T) (string, int) {
	t.Helper()
	out, err := runTandem(t, "history", "users-v2")
	return out, exitStatus(err)
}

// TestBackfillControlCommandsUsageErrors: a bad command line exits with status 2 before any
// call is made (no server answers at the admin URL).
func TestBackfillControlCommandsUsageErrors(t *testing.T) {
	t.Setenv(envAdminURL, "http://127.0.0.1:1")
	t.Setenv(envAdminToken, "t")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"pause", "users-v2"}, "needs --reason"},
		{[]string{"pause", "users-v2", "--reason", "  "}, "needs --reason"},
		{[]string{"pause"}, "takes MIGRATION"},
		{[]string{"resume", "a", "b", "--reason", "r"}, "takes MIGRATION"},
		{[]string{"rate", "users-v2", "--reason", "r"}, "--docs N, --bytes N or both"},
		{[]string{"rate", "users-v2", "--docs", "0", "--reason", "r"}, `--docs "0": want a number more than 0, or unlimited`},
		{[]string{"rate", "users-v2", "--bytes", "-5", "--reason", "r"}, `--bytes "-5"`},
		{[]string{"rate", "users-v2", "--docs", "fast", "--reason", "r"}, `--docs "fast"`},
		{[]string{"rate", "users-v2", "--docs", "10"}, "needs --reason"},
		{[]string{"status", "users-v2", "--interval", "0s"}, "--interval 0s"},
		{[]string{"status", "users-v2", "--interval", "soon"}, "invalid argument"},
		{[]string{"status"}, "takes MIGRATION"},
		{[]string{"status", "users-v2", "--admin", "ftp://x"}, "--admin"},
		{[]string{"pause", "users-v2", "--reason", "r", "--no-such-flag"}, "unknown flag"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, code := backfillCLI(t, tt.args...)
			assert.Equal(t, 2, code, out)
			assert.Contains(t, out, tt.want)
		})
	}
	t.Run("no token", func(t *testing.T) {
		require.NoError(t, os.Unsetenv(envAdminToken))
		out, code := backfillCLI(t, "resume", "users-v2", "--reason", "r")
		assert.Equal(t, 2, code, out)
		assert.Contains(t, out, "no admin token")
	})
	t.Run("nothing answers", func(t *testing.T) {
		out, code := backfillCLI(t, "status", "users-v2")
		assert.Equal(t, 1, code, out)
		assert.Contains(t, out, "calling the admin API")
	})
}

// TestBackfillStatusScreen: the one-screen view of a backfill with two runners.
func TestBackfillStatusScreen(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 10, 0, time.UTC)
	p := backfill.Progress{
		Migration: "users-v2", PlanID: "p1", State: backfill.StateRunning, StartedAt: now.Add(-time.Hour),
		Rate: 2000, Partitions: 16, PartitionsDone: 5, PartitionsActive: 4,
		Estimate: 1_000_000, Copied: 250_000, Bytes: 3 << 29, DeadLettered: 3, Reconverged: 12, Errors: 1,
		DocsPerSec: 1999.6, BytesPerSec: 1.5 * (1 << 20), ETA: 375*time.Second + 200*time.Millisecond,
		Runners: []catalog.BackfillRunner{
			{Owner: "host-a:41", State: "copying", Leases: 2, DocsPerSec: 1000, RateLimit: 1000, UpdatedAt: now.Add(-time.Second)},
			{Owner: "host-b:7", State: "throttled", Leases: 2, DocsPerSec: 999.6, UpdatedAt: now.Add(-1500 * time.Millisecond)},
		},
	}
	var b strings.Builder
	printProgress(&b, palette{}, p, now)
	out := b.String()
	for _, want := range []string{
		`^backfill of users-v2: running\n`,
		`paused\s+no\n`,
		`limits\s+2000 docs/s, unlimited bytes/s\n`,
		`partitions\s+5/16 done, 4 active\n`,
		`copied\s+250000 of ~1000000 \(25\.0%\)\n`,
		`bytes\s+1\.5 GiB\n`,
		`speed\s+2000 docs/s, 1\.5 MiB/s\n`,
		`ETA\s+6m15s\n`,
		`dead letters\s+3\n`,
		`reconverged\s+12\n`,
		`errors\s+1\n`,
		`runners\s+2\n`,
		`OWNER\s+STATE\s+LEASES\s+DOCS/S\s+LIMIT\s+LAST SEEN\n`,
		`host-a:41\s+copying\s+2\s+1000\s+1000 docs/s\s+1s ago\n`,
		`host-b:7\s+throttled\s+2\s+1000\s+unlimited docs/s\s+1.5s ago\n`,
	} {
		assert.Regexp(t, "(?m)"+want, out)
	}
}
