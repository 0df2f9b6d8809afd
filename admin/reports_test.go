package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/report"
	"github.com/tandemdb/tandem/transform"
)

const reportSecret = "s3cr3t-in-a-document"

// newReportFixture is an admin API with release reports over a catalog holding one
// verification run with a mismatch whose recorded diff quotes reportSecret.
func newReportFixture(t *testing.T, tok string) *fixture {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("tandem_admin_test_%d", dbSeq.Add(1))
	cat, err := catalog.Open(ctx, client, catalog.WithDatabase(name))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Database(name).Drop(context.Background()) })
	spec, err := transform.Load("../examples/users-v2.yaml")
	require.NoError(t, err)
	_, err = cat.RegisterSpec(ctx, migration, spec.Version, spec.Redacted(), "test")
	require.NoError(t, err)
	started := time.Now().UTC().Add(-time.Second)
	_, err = cat.RecordMismatch(ctx, catalog.Mismatch{Migration: migration, Key: "u1", Source: "verify",
		Diff: []string{`password: want string "` + reportSecret + `", got string "other"`}})
	require.NoError(t, err)
	require.NoError(t, cat.SaveVerifySummary(ctx, migration, catalog.VerifySummary{
		Keys: 3, Mismatches: 1, Differing: 1, Started: started, Finished: time.Now().UTC()}))
	mgr := flags.NewManager(cat)
	svc := &report.Service{Catalog: cat, Source: report.CatalogSource{Catalog: cat, CheckGates: mgr.CheckGates,
		Spec: func(n string) (*transform.Spec, bool) { return spec, n == migration }}}
	srv := httptest.NewServer(admin.NewHandler(admin.Config{Flags: mgr, Token: tok, Reports: svc}))
	t.Cleanup(srv.Close)
	return &fixture{url: srv.URL, mgr: mgr, cat: cat}
}

func (r reply) report(t *testing.T) report.Report {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var rep report.Report
	require.NoError(t, json.Unmarshal(r.body, &rep))
	return rep
}

func TestReportEndpoints(t *testing.T) {
	f := newReportFixture(t, token)
	base := "/v1/migrations/" + migration + "/reports"

	r := f.call(t, "POST", base, "", "")
	assert.Equal(t, http.StatusUnauthorized, r.status, "generating stores a report: the token is needed")
	r = f.call(t, "POST", base, bearer, "")
	rep := r.report(t)
	assert.Equal(t, report.Fail, rep.Verdict.Result, "1 mismatch, budget 0")
	assert.NotContains(t, string(r.body), reportSecret, "no values unless asked")
	assert.Contains(t, string(f.call(t, "POST", base, bearer, `{"include_values": true}`).body), reportSecret)

	one := base + "/" + rep.ID
	r = f.call(t, "GET", one, bearer, "")
	assert.Equal(t, rep.ID, r.report(t).ID, "reading a stored report needs the token, not the values")
	assert.NotContains(t, string(r.body), reportSecret)
	assert.Equal(t, http.StatusUnauthorized, f.call(t, "GET", one+"?include_values=true", "", "").status, "values need the token")
	assert.Contains(t, string(f.call(t, "GET", one+"?include_values=true", bearer, "").body), reportSecret)
	assert.Equal(t, http.StatusBadRequest, f.call(t, "GET", one+"?include_values=maybe", bearer, "").status)
	assert.Equal(t, http.StatusMethodNotAllowed, f.call(t, "DELETE", one, bearer, "").status)

	for path, code := range map[string]string{
		base + "/0123456789abcdef01234567":        admin.CodeReportNotFound,
		base + "/junk":                            admin.CodeReportNotFound,
		"/v1/migrations/nobody/reports/latest":    admin.CodeNotFound,
		"/v1/migrations/nobody/reports/" + rep.ID: admin.CodeNotFound,
	} {
		r := f.call(t, "GET", path, bearer, "")
		assert.Equal(t, http.StatusNotFound, r.status, path)
		assert.Equal(t, code, r.errorBody(t).Code, path)
	}
	r = f.call(t, "POST", "/v1/migrations/nobody/reports", bearer, "")
	assert.Equal(t, admin.CodeNotFound, r.errorBody(t).Code)

	signs := one + "/signoffs"
	assert.Equal(t, http.StatusUnauthorized, f.call(t, "POST", signs, "", `{"by": "a", "comment": "b"}`).status)
	r = f.call(t, "POST", signs, bearer, `{"comment": "b"}`)
	assert.Equal(t, http.StatusUnprocessableEntity, r.status)
	assert.Equal(t, admin.CodeBadSignOff, r.errorBody(t).Code)
	r = f.call(t, "POST", signs, bearer, `{"by": "a"}`)
	assert.Equal(t, admin.CodeBadSignOff, r.errorBody(t).Code)
	signed := f.call(t, "POST", signs, bearer, `{"by": "Ada", "comment": "waived: known test data"}`, admin.UserHeader, "ada").report(t)
	require.Len(t, signed.SignOffs, 1)
	assert.Equal(t, "api:ada", signed.SignOffs[0].RecordedBy)
	assert.Equal(t, report.Fail, signed.SignOffs[0].Verdict, "the verdict signed is recorded")
	assert.Len(t, f.call(t, "GET", one, bearer, "").report(t).SignOffs, 1)

	c, err := admin.NewClient(f.url, token, nil)
	require.NoError(t, err)
	_, err = c.Report(context.Background(), migration, "0123456789abcdef01234567", false)
	assert.ErrorIs(t, err, report.ErrUnknownReport, "the client's error unwraps to the report package's")
}

func TestReportEndpointsWithoutTokenOrService(t *testing.T) {
	f := newReportFixture(t, "")
	r := f.call(t, "GET", "/v1/migrations/"+migration+"/reports/latest?include_values=true", bearer, "")
	assert.Equal(t, http.StatusForbidden, r.status, "no token configured: values are never handed out")

	plain := newFixture(t, token)
	r = plain.call(t, "POST", "/v1/migrations/"+migration+"/reports", bearer, "")
	assert.Equal(t, http.StatusNotImplemented, r.status)
}
