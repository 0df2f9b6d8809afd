package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/testenv"
)

var client *mongo.Client

func TestMain(m *testing.M) { testenv.MongoMain(m, &client) }

const (
	token     = "s3cret-token"
	migration = "users-v2"
)

var dbSeq atomic.Int64

// fixture is an admin API over a real flags manager on a catalog of its own, with one
// registered migration.
type fixture struct {
	url string
	mgr *flags.Manager
	cat *catalog.Catalog
}

func newFixture(t *testing.T, tok string, opts ...flags.ManagerOption) *fixture {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("tandem_admin_test_%d", dbSeq.Add(1))
	cat, err := catalog.Open(ctx, client, catalog.WithDatabase(name))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Database(name).Drop(context.Background()) })
	_, err = cat.RegisterSpec(ctx, migration, "v1", "name: "+migration, "test")
	require.NoError(t, err)
	mgr := flags.NewManager(cat, opts...)
	srv := httptest.NewServer(admin.NewHandler(admin.Config{Flags: mgr, Token: tok, BackfillCatalog: cat}))
	t.Cleanup(srv.Close)
	return &fixture{url: srv.URL, mgr: mgr, cat: cat}
}

// state is what a refused call must leave as it was.
type state struct {
	values  flags.Values
	history int
}

func (f *fixture) state(t *testing.T) state {
	t.Helper()
	v, err := f.mgr.Get(context.Background(), migration)
	require.NoError(t, err)
	h, err := f.mgr.History(context.Background(), migration, 1000)
	require.NoError(t, err)
	return state{values: v, history: len(h)}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) errorBody(t *testing.T) admin.ErrorResponse {
	t.Helper()
	var e admin.ErrorResponse
	require.NoError(t, json.Unmarshal(r.body, &e), "error answers are JSON: %s", r.body)
	require.NotEmpty(t, e.Error, "an error answer says what went wrong")
	return e
}

func (r reply) values(t *testing.T) flags.Values {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var v flags.Values
	require.NoError(t, json.Unmarshal(r.body, &v))
	return v
}

// call sends one request; auth "" sends no Authorization header.
func (f *fixture) call(t *testing.T, method, path, auth, body string, header ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.url+path, rd)
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

const bearer = "Bearer " + token

func TestAdminEndpointsSucceed(t *testing.T) {
	f := newFixture(t, token)
	base := "/v1/migrations/" + migration

	v := f.call(t, "GET", base+"/flags", bearer, "").values(t)
	assert.Equal(t, flags.PhaseOff, v.Phase)
	assert.Equal(t, flags.ReadOld, v.ReadSource)

	v = f.call(t, "POST", base+"/phase", bearer, `{"to": "shadow", "reason": "start shadowing"}`, "X-Tandem-User", "alice").values(t)
	assert.Equal(t, flags.PhaseShadow, v.Phase)

	v = f.call(t, "POST", base+"/flags", bearer, `{"set": {"shadow_read_percent": 25, "write_block": "false"}, "reason": "sample a quarter"}`).values(t)
	assert.Equal(t, 25.0, v.ShadowReadPercent)
	assert.Equal(t, flags.PhaseShadow, v.Phase)

	got, err := f.mgr.Get(context.Background(), migration)
	require.NoError(t, err)
	assert.Equal(t, v, got, "the answer is what the manager now holds")

	v = f.call(t, "POST", base+"/phase", bearer, `{"to": "dual", "reason": "dual writes"}`).values(t)
	assert.Equal(t, flags.PhaseDual, v.Phase)

	v = f.call(t, "POST", base+"/rollback", bearer, `{"reason": "latency", "to": ""}`, "X-Tandem-User", "bob").values(t)
	assert.NotEqual(t, flags.PhaseDual, v.Phase, "a rollback leaves dual")

	r := f.call(t, "GET", base+"/history?limit=100", bearer, "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var h admin.HistoryResponse
	require.NoError(t, json.Unmarshal(r.body, &h))
	var whos, whys []string
	for _, e := range h.Entries {
		assert.Equal(t, migration, e.Migration)
		assert.False(t, e.At.IsZero())
		whos = append(whos, e.Who)
		whys = append(whys, e.Why)
	}
	assert.Contains(t, whos, "api:alice", "X-Tandem-User names the caller")
	assert.Contains(t, whos, "api:bob")
	assert.Contains(t, whos, "api:127.0.0.1", "without the header the remote address names the caller")
	assert.Contains(t, whys, "start shadowing")
	assert.Contains(t, whys, "sample a quarter")
	assert.Contains(t, whys, "latency")

	r = f.call(t, "GET", base+"/history?limit=1", bearer, "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.NoError(t, json.Unmarshal(r.body, &h))
	assert.Len(t, h.Entries, 1)
}

func TestAdminRefusesWithoutTheToken(t *testing.T) {
	f := newFixture(t, token)
	base := "/v1/migrations/" + migration
	writes := []struct{ path, body string }{
		{base + "/flags", `{"set": {"shadow_read_percent": "5"}, "reason": "r"}`},
		{base + "/phase", `{"to": "shadow", "reason": "r"}`},
		{base + "/cutover", `{"reason": "r"}`},
		{base + "/rollback", `{"reason": "r"}`},
	}
	auths := map[string]string{
		"none":         "",
		"wrong":        "Bearer not-the-token",
		"prefix":       "Bearer " + token[:len(token)-1],
		"longer":       bearer + "x",
		"basic scheme": "Basic " + token,
		"no scheme":    token,
	}
	before := f.state(t)
	for _, w := range writes {
		for name, auth := range auths {
			t.Run(w.path[len(base):]+"/"+name, func(t *testing.T) {
				r := f.call(t, "POST", w.path, auth, w.body)
				assert.Equal(t, http.StatusUnauthorized, r.status, "%s", r.body)
				assert.Equal(t, admin.CodeUnauthorized, r.errorBody(t).Code)
				assert.NotEmpty(t, r.header.Get("WWW-Authenticate"))
				assert.NotContains(t, string(r.body), token, "the answer never echoes the token")
			})
		}
	}
	assert.Equal(t, before, f.state(t), "refused calls change nothing and write no audit entry")

	for name, auth := range auths {
		r := f.call(t, "GET", base+"/flags", auth, "")
		assert.Equal(t, http.StatusUnauthorized, r.status, "%s: reads need the token too: %s", name, r.body)
		assert.Contains(t, r.errorBody(t).Error, "needs the token for reads too")
	}
	assert.Equal(t, http.StatusOK, f.call(t, "GET", base+"/flags", bearer, "").status)

	// With reads open, a read needs no token and a change still does.
	open := httptest.NewServer(admin.NewHandler(admin.Config{Flags: f.mgr, Token: token, BackfillCatalog: f.cat, OpenReads: true}))
	t.Cleanup(open.Close)
	of := &fixture{url: open.URL, mgr: f.mgr, cat: f.cat}
	assert.Equal(t, http.StatusOK, of.call(t, "GET", base+"/flags", "", "").status, "reads are open")
	assert.Equal(t, http.StatusOK, of.call(t, "GET", base+"/overview", "", "").status, "the overview too")
	assert.Equal(t, http.StatusUnauthorized, of.call(t, "POST", base+"/phase", "", `{"to": "shadow", "reason": "r"}`).status)
	assert.Equal(t, before, f.state(t))
}

func TestAdminWithoutAConfiguredTokenIsReadOnly(t *testing.T) {
	f := newFixture(t, "")
	base := "/v1/migrations/" + migration
	before := f.state(t)
	for _, auth := range []string{"", "Bearer ", "Bearer anything"} {
		r := f.call(t, "POST", base+"/phase", auth, `{"to": "shadow", "reason": "r"}`)
		assert.Equal(t, http.StatusForbidden, r.status, "%s", r.body)
		e := r.errorBody(t)
		assert.Equal(t, admin.CodeUnauthorized, e.Code)
		assert.Contains(t, e.Error, "admin token not configured")
	}
	assert.Equal(t, before, f.state(t))
	r := f.call(t, "GET", base+"/flags", "", "")
	assert.Equal(t, http.StatusForbidden, r.status, "no token and reads not open: nothing is answered")
	assert.Contains(t, r.errorBody(t).Error, "--admin-open-reads")

	open := httptest.NewServer(admin.NewHandler(admin.Config{Flags: f.mgr, BackfillCatalog: f.cat, OpenReads: true}))
	t.Cleanup(open.Close)
	of := &fixture{url: open.URL, mgr: f.mgr, cat: f.cat}
	assert.Equal(t, http.StatusOK, of.call(t, "GET", base+"/flags", "", "").status, "read-only with reads open")
	assert.Equal(t, http.StatusForbidden, of.call(t, "POST", base+"/phase", "Bearer anything", `{"to": "shadow", "reason": "r"}`).status)
}

func TestAdminRejectsBadRequestsAndChangesNothing(t *testing.T) {
	f := newFixture(t, token)
	base := "/v1/migrations/" + migration
	huge := `{"reason": "` + strings.Repeat("x", admin.MaxBodyBytes) + `", "to": "shadow"}`
	tests := []struct {
		name, method, path, body string
		header                   []string
		status                   int
		code                     string
		msg                      string
	}{
		{"unknown flag", "POST", base + "/flags", `{"set": {"colour": "blue"}, "reason": "r"}`, nil, 422, admin.CodeUnknownFlag, "colour"},
		{"bad value", "POST", base + "/flags", `{"set": {"shadow_read_percent": "150"}, "reason": "r"}`, nil, 422, admin.CodeBadValue, "150"},
		{"bad value type", "POST", base + "/flags", `{"set": {"write_block": {"x": 1}}, "reason": "r"}`, nil, 422, admin.CodeBadValue, "write_block"},
		{"empty set", "POST", base + "/flags", `{"set": {}, "reason": "r"}`, nil, 400, admin.CodeBadRequest, "set"},
		{"phase skip", "POST", base + "/phase", `{"to": "dual", "reason": "r"}`, nil, 409, admin.CodePhaseStep, ""},
		{"phase missing", "POST", base + "/phase", `{"reason": "r"}`, nil, 400, admin.CodeBadRequest, "to"},
		{"unknown phase", "POST", base + "/phase", `{"to": "sideways", "reason": "r"}`, nil, 0, "", "sideways"},
		{"rollback without reason", "POST", base + "/rollback", `{"to": ""}`, nil, 422, admin.CodeReasonRequired, ""},
		{"rollback blank reason", "POST", base + "/rollback", `{"reason": "   "}`, nil, 422, admin.CodeReasonRequired, ""},
		{"bad JSON", "POST", base + "/phase", `{"to": "shadow",`, nil, 400, admin.CodeBadRequest, ""},
		{"not an object", "POST", base + "/phase", `["shadow"]`, nil, 400, admin.CodeBadRequest, ""},
		{"unknown field", "POST", base + "/phase", `{"to": "shadow", "reason": "r", "force": true}`, nil, 400, admin.CodeBadRequest, "force"},
		{"trailing data", "POST", base + "/phase", `{"to": "shadow", "reason": "r"} {"to": "dual"}`, nil, 400, admin.CodeBadRequest, "after"},
		{"oversized body", "POST", base + "/phase", huge, nil, 413, admin.CodeBadRequest, "larger than"},
		{"not JSON content type", "POST", base + "/phase", `{"to": "shadow", "reason": "r"}`, []string{"Content-Type", "text/plain"}, 415, admin.CodeBadRequest, "application/json"},
		{"user header too long", "POST", base + "/phase", `{"to": "shadow", "reason": "r"}`, []string{"X-Tandem-User", strings.Repeat("u", 129)}, 400, admin.CodeBadRequest, "128"},
		{"user header not printable", "POST", base + "/phase", `{"to": "shadow", "reason": "r"}`, []string{"X-Tandem-User", "eve\u200b"}, 400, admin.CodeBadRequest, "printable"},
		{"user header twice", "POST", base + "/phase", `{"to": "shadow", "reason": "r"}`, []string{"X-Tandem-User", "a", "X-Tandem-User", "b"}, 400, admin.CodeBadRequest, "once"},
		{"unknown migration", "POST", "/v1/migrations/nobody/phase", `{"to": "shadow", "reason": "r"}`, nil, 404, admin.CodeNotFound, ""},
		{"unknown migration read", "GET", "/v1/migrations/nobody/flags", "", nil, 404, admin.CodeNotFound, ""},
		{"bad limit", "GET", base + "/history?limit=lots", "", nil, 400, admin.CodeBadRequest, "limit"},
		{"limit too big", "GET", base + "/history?limit=1000000", "", nil, 400, admin.CodeBadRequest, "limit"},
		{"GET phase", "GET", base + "/phase", "", nil, 405, admin.CodeBadRequest, "GET"},
		{"DELETE flags", "DELETE", base + "/flags", "", nil, 405, admin.CodeBadRequest, "DELETE"},
		{"PUT rollback", "PUT", base + "/rollback", `{"reason": "r"}`, nil, 405, admin.CodeBadRequest, "PUT"},
		{"no such endpoint", "GET", "/v1/migrations/" + migration + "/secrets", "", nil, 404, admin.CodeNotFound, "secrets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.state(t)
			r := f.call(t, tt.method, tt.path, bearer, tt.body, tt.header...)
			e := r.errorBody(t)
			if tt.status != 0 {
				assert.Equal(t, tt.status, r.status, "%s", r.body)
				assert.Equal(t, tt.code, e.Code, "%s", r.body)
			} else {
				assert.True(t, r.status == 409 || r.status == 422, "%d %s", r.status, r.body)
			}
			assert.Contains(t, e.Error, tt.msg)
			assert.Equal(t, "application/json", r.header.Get("Content-Type"))
			if r.status == http.StatusMethodNotAllowed {
				assert.NotEmpty(t, r.header.Get("Allow"))
			}
			assert.Equal(t, before, f.state(t), "a refused call changes nothing")
		})
	}
}

// passGates records what the cutover gates look for: a clean verification and a small lag.
func (f *fixture) passGates(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	now := time.Now()
	summary, err := json.Marshal(flags.VerifySummary{Keys: 42, Clean: true, Started: now.Add(-time.Minute), Finished: now})
	require.NoError(t, err)
	_, err = f.cat.SaveReport(ctx, catalog.Report{Migration: migration, Kind: flags.ReportKindVerify, Content: string(summary)})
	require.NoError(t, err)
	require.NoError(t, f.cat.ReportLag(ctx, migration, flags.ComponentForward, 100*time.Millisecond))
}

// gateConfig keeps the gates' age limits far from anything a slow test run could reach.
var gateConfig = flags.WithGates(flags.GateConfig{VerifyMaxAge: 24 * time.Hour, LagFreshness: 24 * time.Hour})

func TestAdminCutoverReportsEveryGate(t *testing.T) {
	f := newFixture(t, token, gateConfig)
	base := "/v1/migrations/" + migration

	r := f.call(t, "POST", base+"/cutover", bearer, "")
	assert.Equal(t, http.StatusConflict, r.status, "%s", r.body)
	assert.Equal(t, admin.CodePhaseStep, r.errorBody(t).Code, "cutover only from dual")

	f.call(t, "POST", base+"/phase", bearer, `{"to": "shadow", "reason": "r"}`).values(t)
	f.call(t, "POST", base+"/phase", bearer, `{"to": "dual", "reason": "r"}`).values(t)

	before := f.state(t)
	r = f.call(t, "POST", base+"/cutover", bearer, `{"reason": "looks good"}`)
	assert.Equal(t, http.StatusConflict, r.status, "%s", r.body)
	e := r.errorBody(t)
	assert.Equal(t, admin.CodeGateFailed, e.Code)
	require.Len(t, e.Gates, 3, "every gate's result, passed or failed")
	byName := map[string]flags.GateResult{}
	for _, g := range e.Gates {
		byName[g.Gate] = g
	}
	assert.False(t, byName[flags.GateVerification].OK)
	assert.Contains(t, byName[flags.GateVerification].Detail, "no verification report")
	assert.False(t, byName[flags.GateChangeLag].OK)
	assert.True(t, byName[flags.GateReversePath].OK)
	assert.Contains(t, e.Error, flags.GateVerification)
	assert.Equal(t, before, f.state(t), "a failed gate changes nothing")

	f.passGates(t)
	r = f.call(t, "POST", base+"/cutover", bearer, `{"reason": "verified clean"}`, "X-Tandem-User", "carol")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var res admin.CutoverResponse
	require.NoError(t, json.Unmarshal(r.body, &res))
	assert.Equal(t, flags.PhaseCutover, res.Values.Phase)
	assert.Equal(t, flags.ReadNew, res.Values.ReadSource)
	require.Len(t, res.Gates, 3)
	for _, g := range res.Gates {
		assert.True(t, g.OK, "%s: %s", g.Gate, g.Detail)
		assert.NotEmpty(t, g.Detail)
	}

	v := f.call(t, "POST", base+"/rollback", bearer, `{"reason": "errors on new"}`).values(t)
	assert.Equal(t, flags.PhaseDual, v.Phase, "rollback goes one step back by default")
	assert.Equal(t, flags.ReadOld, v.ReadSource)
	v = f.call(t, "POST", base+"/rollback", bearer, `{"reason": "start over", "to": "off"}`).values(t)
	assert.Equal(t, flags.PhaseOff, v.Phase)

	h, err := f.mgr.History(context.Background(), migration, 3)
	require.NoError(t, err)
	require.Len(t, h, 3)
	assert.Equal(t, "start over", h[0].Why)
	assert.Equal(t, "errors on new", h[1].Why)
	assert.Equal(t, "api:carol", h[2].Who)
	assert.Equal(t, "verified clean", h[2].Why)
}
