package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/flags"
)

const (
	adminTestToken     = "cli-test-token"
	adminTestMigration = "users-v2"
)

// adminAPI is the real admin handler over a real flags manager on an embedded FerretDB,
// with one registered migration.
type adminAPI struct {
	url    string
	mgr    *flags.Manager
	cat    *catalog.Catalog
	client *mongo.Client // on the store that holds the catalog
}

func startAdminAPI(t *testing.T) *adminAPI {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := embedmongo.Start(ctx, embedmongo.Options{})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	client, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	cat, err := catalog.Open(ctx, client)
	require.NoError(t, err)
	_, err = cat.RegisterSpec(ctx, adminTestMigration, "v1", "name: "+adminTestMigration, "test")
	require.NoError(t, err)
	// Age limits far from anything a slow run could reach: the gates' outcome is set by what
	// the test records, never by the clock.
	mgr := flags.NewManager(cat, flags.WithGates(flags.GateConfig{VerifyMaxAge: 24 * time.Hour, LagFreshness: 24 * time.Hour}))
	srv := httptest.NewServer(admin.NewHandler(admin.Config{Flags: mgr, Token: adminTestToken, BackfillCatalog: cat}))
	t.Cleanup(srv.Close)
	t.Setenv(envAdminURL, srv.URL)
	t.Setenv(envAdminToken, adminTestToken)
	t.Setenv(envAdminUser, "tester")
	return &adminAPI{url: srv.URL, mgr: mgr, cat: cat, client: client}
}

// exitStatus is the status main would exit with for err.
func exitStatus(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}

// tandemCLI runs one command in-process and returns its output and exit status.
func tandemCLI(t *testing.T, args ...string) (string, int, error) {
	t.Helper()
	out, err := runTandem(t, args...)
	return out, exitStatus(err), err
}

func (a *adminAPI) values(t *testing.T) flags.Values {
	t.Helper()
	v, err := a.mgr.Get(context.Background(), adminTestMigration)
	require.NoError(t, err)
	return v
}

func (a *adminAPI) historyLen(t *testing.T) int {
	t.Helper()
	h, err := a.mgr.History(context.Background(), adminTestMigration, 1000)
	require.NoError(t, err)
	return len(h)
}

func TestFlagCommandsDriveTheAdminAPI(t *testing.T) {
	a := startAdminAPI(t)
	m := adminTestMigration

	out, status, err := tandemCLI(t, "flags", "get", m)
	require.NoError(t, err, out)
	assert.Equal(t, 0, status)
	assert.Contains(t, out, "users-v2:")
	assert.Regexp(t, `phase\s+off`, out)
	assert.Regexp(t, `read_source\s+old`, out)

	out, _, err = tandemCLI(t, "flags", "get", m, "--output", "json")
	require.NoError(t, err, out)
	var v flags.Values
	require.NoError(t, json.Unmarshal([]byte(out), &v), "--output json prints the values as JSON: %s", out)
	assert.Equal(t, a.values(t), v)

	out, _, err = tandemCLI(t, "phase", m, "shadow", "--reason", "start shadow writes")
	require.NoError(t, err, out)
	assert.Contains(t, out, "users-v2: phase is now shadow")
	assert.Equal(t, flags.PhaseShadow, a.values(t).Phase)

	out, _, err = tandemCLI(t, "flags", "set", m, "shadow_read_percent=10", "write_block=false", "--reason", "compare a tenth")
	require.NoError(t, err, out)
	assert.Contains(t, out, "set shadow_read_percent=10 write_block=false")
	assert.Regexp(t, `shadow_read_percent\s+10`, out)
	assert.Equal(t, 10.0, a.values(t).ShadowReadPercent)

	out, status, err = tandemCLI(t, "phase", m, "cutover", "--reason", "skip the gates")
	assert.Error(t, err)
	assert.Equal(t, 1, status, "a refusal from the server exits 1: %v", err)
	assert.Equal(t, flags.PhaseShadow, a.values(t).Phase)

	out, _, err = tandemCLI(t, "phase", m, "dual", "--reason", "dual writes", "--output", "json")
	require.NoError(t, err, out)
	require.NoError(t, json.Unmarshal([]byte(out), &v))
	assert.Equal(t, flags.PhaseDual, v.Phase)

	out, _, err = tandemCLI(t, "rollback", m, "--reason", "p99 up")
	require.NoError(t, err, out)
	assert.Contains(t, out, "users-v2: rolled back to ")
	assert.NotEqual(t, flags.PhaseDual, a.values(t).Phase)

	out, _, err = tandemCLI(t, "history", m)
	require.NoError(t, err, out)
	assert.Contains(t, out, "api:tester", "the audit names the CLI user")
	assert.Contains(t, out, "start shadow writes")
	assert.Contains(t, out, "compare a tenth")
	assert.Contains(t, out, "p99 up")

	out, _, err = tandemCLI(t, "history", m, "--output", "json", "--limit", "2")
	require.NoError(t, err, out)
	var entries []admin.HistoryEntry
	require.NoError(t, json.Unmarshal([]byte(out), &entries), out)
	assert.Len(t, entries, 2)
}

func TestFlagCommandsReportServerErrorsWithTheirCode(t *testing.T) {
	a := startAdminAPI(t)
	m := adminTestMigration
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"phase", m, "dual", "--reason", "skip"}, admin.CodePhaseStep},
		{[]string{"flags", "set", m, "colour=blue", "--reason", "r"}, admin.CodeUnknownFlag},
		{[]string{"flags", "set", m, "shadow_read_percent=200", "--reason", "r"}, admin.CodeBadValue},
		{[]string{"flags", "get", "nobody"}, admin.CodeNotFound},
		{[]string{"phase", "nobody", "shadow", "--reason", "r"}, admin.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			before, n := a.values(t), a.historyLen(t)
			_, status, err := tandemCLI(t, tt.args...)
			require.Error(t, err)
			assert.Equal(t, 1, status)
			assert.Contains(t, err.Error(), tt.want)
			assert.Equal(t, before, a.values(t))
			assert.Equal(t, n, a.historyLen(t))
		})
	}
}

func TestFlagCommandsToken(t *testing.T) {
	a := startAdminAPI(t)
	m := adminTestMigration
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	good := write("good", "  "+adminTestToken+"\n\n")
	wrong := write("wrong", "not-the-token\n")
	empty := write("empty", " \n\t\n")

	t.Run("no token", func(t *testing.T) {
		t.Setenv(envAdminToken, "")
		_, status, err := tandemCLI(t, "phase", m, "shadow", "--reason", "r")
		require.Error(t, err)
		assert.Equal(t, 2, status)
		assert.Contains(t, err.Error(), "no admin token")
		assert.Contains(t, err.Error(), envAdminToken)
		_, status, err = tandemCLI(t, "flags", "get", m)
		assert.Equal(t, 1, status, "reads need the token too (TestReadsThatNeedTheToken)")
		assert.ErrorContains(t, err, "needs the token for reads too")
	})
	t.Run("unreadable and empty files", func(t *testing.T) {
		_, status, err := tandemCLI(t, "phase", m, "shadow", "--reason", "r", "--token-file", filepath.Join(dir, "missing"))
		assert.Equal(t, 2, status)
		assert.ErrorContains(t, err, "--token-file")
		assert.ErrorContains(t, err, "missing")
		_, status, err = tandemCLI(t, "phase", m, "shadow", "--reason", "r", "--token-file", empty)
		assert.Equal(t, 2, status)
		assert.ErrorContains(t, err, "is empty")
	})
	t.Run("wrong token changes nothing", func(t *testing.T) {
		before, n := a.values(t), a.historyLen(t)
		_, status, err := tandemCLI(t, "phase", m, "shadow", "--reason", "r", "--token-file", wrong)
		require.Error(t, err)
		assert.Equal(t, 1, status)
		assert.ErrorContains(t, err, admin.CodeUnauthorized)
		assert.ErrorContains(t, err, "--token-file")
		assert.Equal(t, before, a.values(t))
		assert.Equal(t, n, a.historyLen(t))
	})
	t.Run("the file wins over the environment and is trimmed", func(t *testing.T) {
		t.Setenv(envAdminToken, "stale")
		out, status, err := tandemCLI(t, "phase", m, "shadow", "--reason", "from a file", "--token-file", good)
		require.NoError(t, err, out)
		assert.Equal(t, 0, status)
		assert.Equal(t, flags.PhaseShadow, a.values(t).Phase)
	})
}

func TestFlagCommandsUsageErrors(t *testing.T) {
	// Nothing listens here: every case must fail before calling the API.
	t.Setenv(envAdminURL, "http://127.0.0.1:1")
	t.Setenv(envAdminToken, "t")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"flags"}, "needs a subcommand"},
		{[]string{"flags", "frob", "m"}, "unknown subcommand"},
		{[]string{"flags", "get"}, "takes MIGRATION"},
		{[]string{"flags", "get", "a", "b"}, "takes MIGRATION"},
		{[]string{"flags", "get", ""}, "argument 1 is empty"},
		{[]string{"flags", "set", "m"}, "takes MIGRATION FLAG=VALUE"},
		{[]string{"flags", "set", "m", "read_source", "--reason", "r"}, "want FLAG=VALUE"},
		{[]string{"flags", "set", "m", "=new", "--reason", "r"}, "no flag name"},
		{[]string{"flags", "set", "m", "read_source=new", "read_source=old", "--reason", "r"}, "given twice"},
		{[]string{"flags", "set", "m", "read_source=new"}, "needs --reason"},
		{[]string{"phase", "m", "shadow"}, "needs --reason"},
		{[]string{"phase", "m"}, "takes MIGRATION PHASE"},
		{[]string{"rollback", "m"}, "needs --reason"},
		{[]string{"rollback", "m", "--reason", "  "}, "needs --reason"},
		{[]string{"cutover"}, "takes MIGRATION"},
		{[]string{"history", "m", "--limit", "-1"}, "--limit -1"},
		{[]string{"flags", "get", "m", "--admin", "ftp://example.com"}, "want http:// or https://"},
		{[]string{"flags", "get", "m", "--admin", "127.0.0.1:9090"}, "--admin"},
		{[]string{"flags", "get", "m", "--admin", "http://"}, "no host"},
		{[]string{"flags", "get", "m", "--admin", "http://h:1/?x=1"}, "query"},
		{[]string{"flags", "get", "m", "--timeout", "0s"}, "--timeout 0s"},
		{[]string{"flags", "get", "m", "--frobnicate"}, "unknown flag: --frobnicate"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			out, status, err := tandemCLI(t, tt.args...)
			require.Error(t, err, out)
			assert.Equal(t, 2, status, "a bad argument is a usage error: %v", err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestFlagCommandsSayWhenNothingAnswers(t *testing.T) {
	_, status, err := tandemCLI(t, "flags", "get", "m", "--admin", "http://127.0.0.1:1")
	require.Error(t, err)
	assert.Equal(t, 1, status)
	assert.Contains(t, err.Error(), "calling the admin API")
}

func TestCutoverCommandPrintsEveryGate(t *testing.T) {
	a := startAdminAPI(t)
	m := adminTestMigration
	for _, to := range []string{"shadow", "dual"} {
		out, _, err := tandemCLI(t, "phase", m, to, "--reason", "r")
		require.NoError(t, err, out)
	}

	out, status, err := tandemCLI(t, "cutover", m)
	require.Error(t, err)
	assert.Equal(t, 1, status)
	assert.Regexp(t, `gate verification\s+FAILED\s+no verification report`, out)
	assert.Regexp(t, `gate change_lag\s+FAILED`, out)
	assert.Regexp(t, `gate reverse_path\s+ok`, out)
	assert.Contains(t, err.Error(), "failed gate(s): verification, change_lag")
	assert.NotContains(t, err.Error(), "reverse_path", "only the failed gates are named")
	assert.Equal(t, flags.PhaseDual, a.values(t).Phase)

	out, status, err = tandemCLI(t, "cutover", m, "--output", "json")
	require.Error(t, err)
	assert.Equal(t, 1, status)
	var refusal admin.ErrorResponse
	require.NoError(t, json.Unmarshal([]byte(out), &refusal), out)
	assert.Equal(t, admin.CodeGateFailed, refusal.Code)
	assert.Len(t, refusal.Gates, 3)

	ctx := context.Background()
	now := time.Now()
	summary, err := json.Marshal(flags.VerifySummary{Keys: 7, Clean: true, Started: now.Add(-time.Minute), Finished: now})
	require.NoError(t, err)
	_, err = a.cat.SaveReport(ctx, catalog.Report{Migration: m, Kind: flags.ReportKindVerify, Content: string(summary)})
	require.NoError(t, err)
	require.NoError(t, a.cat.ReportLag(ctx, m, flags.ComponentForward, 50*time.Millisecond))

	out, status, err = tandemCLI(t, "cutover", m, "--reason", "verified clean")
	require.NoError(t, err, out)
	assert.Equal(t, 0, status)
	assert.Regexp(t, `gate verification\s+ok`, out)
	assert.Regexp(t, `gate change_lag\s+ok`, out)
	assert.Contains(t, out, "users-v2: cut over")
	assert.Regexp(t, `read_source\s+new`, out)
	v := a.values(t)
	assert.Equal(t, flags.PhaseCutover, v.Phase)

	out, _, err = tandemCLI(t, "rollback", m, "--reason", "errors", "--to", "shadow", "--output", "json")
	require.NoError(t, err, out)
	require.NoError(t, json.Unmarshal([]byte(out), &v), out)
	assert.Equal(t, flags.PhaseShadow, v.Phase)
	assert.Equal(t, flags.ReadOld, v.ReadSource)

	out, _, err = tandemCLI(t, "rollback", m, "--reason", "again", "--to", "dual")
	require.Error(t, err, out)
	assert.Contains(t, err.Error(), admin.CodePhaseStep, "a rollback must go back")
}

// TestReadsThatNeedTheToken: the admin API wants the token for reads too (the proxy runs
// without --admin-open-reads); a read without one says what to do, and exits 1; with a wrong
// one it is refused as a change is; with the right one it works; with open reads it needs none.
func TestReadsThatNeedTheToken(t *testing.T) {
	a := startAdminAPI(t)
	for _, args := range [][]string{{"flags", "get", adminTestMigration}, {"history", adminTestMigration},
		{"backfill", "status", adminTestMigration}, {"report", adminTestMigration, "--id", "latest"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Setenv(envAdminToken, "")
			_, status, err := tandemCLI(t, args...)
			require.Error(t, err)
			assert.Equal(t, exitFailed, status)
			assert.Equal(t, "this admin API needs the token for reads too: set $TANDEM_ADMIN_TOKEN or --token-file (unauthorized)", errorLine(err))
			assert.ErrorIs(t, err, admin.ErrUnauthorized)

			t.Setenv(envAdminToken, "not-it")
			_, status, err = tandemCLI(t, args...)
			require.Error(t, err)
			assert.Equal(t, exitFailed, status)
			assert.Equal(t, "the admin API refused the token: check $TANDEM_ADMIN_TOKEN or --token-file (unauthorized)", errorLine(err))
		})
	}
	out, status, err := tandemCLI(t, "flags", "get", adminTestMigration)
	require.NoError(t, err, out)
	assert.Equal(t, exitOK, status)
	assert.Regexp(t, `phase\s+off`, out)

	open := httptest.NewServer(admin.NewHandler(admin.Config{Flags: a.mgr, Token: adminTestToken, OpenReads: true}))
	t.Cleanup(open.Close)
	t.Setenv(envAdminToken, "")
	out, status, err = tandemCLI(t, "flags", "get", adminTestMigration, "--admin", open.URL)
	require.NoError(t, err, out)
	assert.Equal(t, exitOK, status, "open reads need no token")
}
