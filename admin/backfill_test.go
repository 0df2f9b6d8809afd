package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/admin/admintest"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
)

// backfillConfig is a backfill of the fixture's migration over n documents in a database of the
// test's own, small enough for FerretDB under the race detector.
func (f *fixture) backfillConfig(t *testing.T, n int) backfill.Config {
	t.Helper()
	cfg := admintest.Backfill(t, client, f.cat, migration, fmt.Sprintf("tandem_admin_bf_%d", dbSeq.Add(1)), n, 3)
	cfg.Log = testLog()
	return cfg
}

// testLog is the backfill's logger: to stderr with TANDEM_TEST_LOG set, else discarded.
func testLog() *slog.Logger {
	if os.Getenv("TANDEM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func (r reply) progress(t *testing.T) backfill.Progress {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var p backfill.Progress
	require.NoError(t, json.Unmarshal(r.body, &p))
	return p
}

// backfillEntries returns the audit entries of kind backfill, newest first.
func (f *fixture) backfillEntries(t *testing.T) []catalog.AuditEntry {
	t.Helper()
	all, err := f.mgr.History(context.Background(), migration, 1000)
	require.NoError(t, err)
	var out []catalog.AuditEntry
	for _, e := range all {
		if e.Kind == catalog.KindBackfill {
			out = append(out, e)
		}
	}
	return out
}

// TestBackfillEndpointsControlAPlan: no plan is a 404; after Prepare, pause, resume and rate
// changes show in the status (the API's and the package's) and in the audit trail with who and
// why; a finished backfill cannot be paused.
func TestBackfillEndpointsControlAPlan(t *testing.T) {
	f := newFixture(t, token)
	base := "/v1/migrations/" + migration + "/backfill"
	ctx := context.Background()

	r := f.call(t, "GET", base, bearer, "")
	assert.Equal(t, http.StatusNotFound, r.status, "%s", r.body)
	e := r.errorBody(t)
	assert.Equal(t, admin.CodeBackfillNotStarted, e.Code)
	assert.Contains(t, e.Error, "no backfill plan")
	r = f.call(t, "POST", base+"/pause", bearer, `{"reason": "r"}`)
	assert.Equal(t, http.StatusNotFound, r.status, "%s", r.body)
	assert.Equal(t, admin.CodeBackfillNotStarted, r.errorBody(t).Code)

	cfg := f.backfillConfig(t, 60)
	_, err := backfill.Prepare(ctx, cfg)
	require.NoError(t, err)
	p := f.call(t, "GET", base, bearer, "").progress(t)
	assert.Equal(t, backfill.StateRunning, p.State)
	assert.Equal(t, int64(60), p.Estimate)
	assert.Positive(t, p.Partitions)
	assert.Zero(t, p.Copied)

	p = f.call(t, "POST", base+"/pause", bearer, `{"reason": "peak hours"}`, "X-Tandem-User", "alice").progress(t)
	assert.True(t, p.Paused)
	assert.Equal(t, backfill.StatePaused, p.State)
	r = f.call(t, "POST", base+"/pause", bearer, `{"reason": "again"}`)
	assert.Equal(t, http.StatusConflict, r.status)
	assert.Equal(t, admin.CodeBackfillPaused, r.errorBody(t).Code)

	p = f.call(t, "POST", base+"/rate", bearer, `{"docs_per_sec": 500, "bytes_per_sec": "unlimited", "reason": "gentle"}`, "X-Tandem-User", "bob").progress(t)
	assert.Equal(t, 500.0, p.Rate)
	assert.Zero(t, p.BytesRate, "0 in the answer: unlimited")
	p = f.call(t, "POST", base+"/rate", bearer, `{"bytes_per_sec": 1e6, "reason": "cap bytes"}`).progress(t)
	assert.Equal(t, 500.0, p.Rate, "a limit left out is kept")
	assert.Equal(t, 1e6, p.BytesRate)

	p = f.call(t, "POST", base+"/resume", bearer, `{"reason": "quiet again"}`, "X-Tandem-User", "alice").progress(t)
	assert.False(t, p.Paused)
	r = f.call(t, "POST", base+"/resume", bearer, `{"reason": "again"}`)
	assert.Equal(t, http.StatusConflict, r.status)
	assert.Equal(t, admin.CodeBackfillNotPaused, r.errorBody(t).Code)
	p = f.call(t, "POST", base+"/rate", bearer, `{"docs_per_sec": "unlimited", "bytes_per_sec": "unlimited", "reason": "full speed"}`).progress(t)
	assert.Zero(t, p.Rate)
	assert.Zero(t, p.BytesRate)

	direct, err := backfill.Status(ctx, f.cat, migration)
	require.NoError(t, err)
	assert.Equal(t, p.Paused, direct.Paused)
	assert.Equal(t, p.Rate, direct.Rate)

	got := f.backfillEntries(t)
	want := []struct{ who, why, subject, from, to string }{
		{"api:127.0.0.1", "full speed", "bytes_rate", "1e+06", "unlimited"},
		{"api:127.0.0.1", "full speed", "rate", "500", "unlimited"},
		{"api:alice", "quiet again", "paused", "true", "false"},
		{"api:127.0.0.1", "cap bytes", "bytes_rate", "unlimited", "1e+06"},
		{"api:bob", "gentle", "bytes_rate", "unlimited", "unlimited"},
		{"api:bob", "gentle", "rate", "unlimited", "500"},
		{"api:alice", "peak hours", "paused", "false", "true"},
	}
	require.Len(t, got, len(want), "one audit entry per change; refusals leave none")
	for i, w := range want {
		assert.Equal(t, w, struct{ who, why, subject, from, to string }{got[i].Who, got[i].Why, got[i].Subject, got[i].From, got[i].To}, "entry %d", i)
	}
	h := f.call(t, "GET", "/v1/migrations/"+migration+"/history?limit=1", bearer, "")
	assert.Contains(t, string(h.body), `"kind": "backfill"`, "the history endpoint lists them")

	runCtx, cancel := context.WithTimeout(ctx, time.Minute) // the backfill waits out catalog trouble: bound it
	defer cancel()
	_, err = backfill.Run(runCtx, cfg)
	require.NoError(t, err)
	p = f.call(t, "GET", base, bearer, "").progress(t)
	assert.Equal(t, backfill.StateDone, p.State)
	assert.Equal(t, int64(60), p.Copied)
	assert.Equal(t, p.Partitions, p.PartitionsDone)
	r = f.call(t, "POST", base+"/pause", bearer, `{"reason": "too late"}`)
	assert.Equal(t, http.StatusConflict, r.status)
	e = r.errorBody(t)
	assert.Equal(t, admin.CodeBackfillFinished, e.Code)
	assert.Contains(t, e.Error, "partitions done")
}

// TestBackfillEndpointsRefuseAndChangeNothing: without the token, without a reason, with a
// limit of 0 or less or not a number (named in the answer), a change is refused and nothing
// is recorded.
func TestBackfillEndpointsRefuseAndChangeNothing(t *testing.T) {
	f := newFixture(t, token)
	ctx := context.Background()
	_, err := backfill.Prepare(ctx, f.backfillConfig(t, 10))
	require.NoError(t, err)
	base := "/v1/migrations/" + migration + "/backfill"
	tests := []struct {
		name, path, auth, body string
		status                 int
		code, msg              string
	}{
		{"pause without token", "/pause", "", `{"reason": "r"}`, 401, admin.CodeUnauthorized, "token"},
		{"pause with a wrong token", "/pause", "Bearer nope", `{"reason": "r"}`, 401, admin.CodeUnauthorized, "token"},
		{"resume without token", "/resume", "", `{"reason": "r"}`, 401, admin.CodeUnauthorized, "token"},
		{"rate without token", "/rate", "", `{"docs_per_sec": 5, "reason": "r"}`, 401, admin.CodeUnauthorized, "token"},
		{"pause without reason", "/pause", bearer, `{}`, 422, admin.CodeReasonRequired, "reason"},
		{"pause with a blank reason", "/pause", bearer, `{"reason": "  "}`, 422, admin.CodeReasonRequired, "reason"},
		{"pause with an empty body", "/pause", bearer, ``, 422, admin.CodeReasonRequired, "reason"},
		{"rate without reason", "/rate", bearer, `{"docs_per_sec": 5}`, 422, admin.CodeReasonRequired, "reason"},
		{"rate of 0", "/rate", bearer, `{"docs_per_sec": 0, "reason": "r"}`, 422, admin.CodeBadRate, "docs_per_sec"},
		{"negative rate", "/rate", bearer, `{"docs_per_sec": 10, "bytes_per_sec": -1, "reason": "r"}`, 422, admin.CodeBadRate, "bytes_per_sec"},
		{"rate not a number", "/rate", bearer, `{"bytes_per_sec": "fast", "reason": "r"}`, 422, admin.CodeBadRate, "bytes_per_sec"},
		{"rate null", "/rate", bearer, `{"docs_per_sec": null, "reason": "r"}`, 422, admin.CodeBadRate, "docs_per_sec"},
		{"rate names no limit", "/rate", bearer, `{"reason": "r"}`, 400, admin.CodeBadRequest, "docs_per_sec"},
		{"rate with an unknown field", "/rate", bearer, `{"docs": 5, "reason": "r"}`, 400, admin.CodeBadRequest, "docs"},
		{"GET pause", "/pause", bearer, "", 405, admin.CodeBadRequest, "GET"},
		{"POST status", "", bearer, `{"reason": "r"}`, 405, admin.CodeBadRequest, "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, err := f.cat.BackfillPlan(ctx, migration)
			require.NoError(t, err)
			entries := len(f.backfillEntries(t))
			method := "POST"
			if tt.name == "GET pause" {
				method = "GET"
			}
			r := f.call(t, method, base+tt.path, tt.auth, tt.body)
			assert.Equal(t, tt.status, r.status, "%s", r.body)
			e := r.errorBody(t)
			assert.Equal(t, tt.code, e.Code)
			assert.Contains(t, e.Error, tt.msg)
			after, err := f.cat.BackfillPlan(ctx, migration)
			require.NoError(t, err)
			assert.Equal(t, before.Control, after.Control, "a refused call changes nothing")
			assert.Len(t, f.backfillEntries(t), entries, "and records nothing")
		})
	}

	// A server without the catalog does not offer backfill control.
	srv := httptest.NewServer(admin.NewHandler(admin.Config{Flags: f.mgr, Token: token}))
	t.Cleanup(srv.Close)
	plain := &fixture{url: srv.URL, mgr: f.mgr, cat: f.cat}
	assert.Equal(t, http.StatusNotImplemented, plain.call(t, "GET", base, bearer, "").status)
	assert.Equal(t, http.StatusNotImplemented, plain.call(t, "POST", base+"/pause", bearer, `{"reason": "r"}`).status)
	assert.Equal(t, http.StatusUnauthorized, plain.call(t, "POST", base+"/pause", "", `{"reason": "r"}`).status, "the token comes first")
}

// TestBackfillClientMirrorsTheEndpoints: the client's methods, and its errors unwrapping to the
// backfill package's sentinels.
func TestBackfillClientMirrorsTheEndpoints(t *testing.T) {
	f := newFixture(t, token)
	ctx := context.Background()
	c, err := admin.NewClient(f.url, token, nil)
	require.NoError(t, err)
	c.User = "dana"

	_, err = c.BackfillStatus(ctx, migration)
	assert.ErrorIs(t, err, backfill.ErrNotStarted)
	_, err = backfill.Prepare(ctx, f.backfillConfig(t, 10))
	require.NoError(t, err)

	p, err := c.BackfillPause(ctx, migration, "maintenance")
	require.NoError(t, err)
	assert.True(t, p.Paused)
	_, err = c.BackfillPause(ctx, migration, "again")
	assert.ErrorIs(t, err, backfill.ErrAlreadyPaused)
	_, err = c.BackfillResume(ctx, migration, "")
	assert.ErrorIs(t, err, flags.ErrReasonRequired)
	p, err = c.BackfillResume(ctx, migration, "done")
	require.NoError(t, err)
	assert.False(t, p.Paused)
	_, err = c.BackfillResume(ctx, migration, "again")
	assert.ErrorIs(t, err, backfill.ErrNotPaused)

	p, err = c.BackfillRate(ctx, migration, 250, 0, "slower")
	require.NoError(t, err)
	assert.Equal(t, 250.0, p.Rate)
	assert.Zero(t, p.BytesRate)
	p, err = c.BackfillRate(ctx, migration, backfill.Unlimited, 4096, "bytes instead")
	require.NoError(t, err)
	assert.Zero(t, p.Rate)
	assert.Equal(t, 4096.0, p.BytesRate)
	_, err = c.BackfillRate(ctx, migration, -3, 0, "r")
	assert.ErrorIs(t, err, backfill.ErrInvalidRate)
	_, err = c.BackfillRate(ctx, migration, 0, 0, "r")
	assert.ErrorIs(t, err, admin.ErrBadRequest)

	got, err := c.BackfillStatus(ctx, migration)
	require.NoError(t, err)
	assert.Equal(t, 4096.0, got.BytesRate)
	entries := f.backfillEntries(t)
	require.NotEmpty(t, entries)
	assert.Equal(t, "api:dana", entries[0].Who)
	assert.Equal(t, "bytes instead", entries[0].Why)

	anon, err := admin.NewClient(f.url, "", nil)
	require.NoError(t, err)
	_, err = anon.BackfillPause(ctx, migration, "r")
	assert.ErrorIs(t, err, admin.ErrUnauthorized)
}
