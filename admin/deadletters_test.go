package admin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/catalog"
	mig "github.com/tandemdb/tandem/migration"
)

// TestDeadLetterEndpoints lists dead letters (with their filters and bad queries), and retries
// them through the server's runner: the token and a reason are needed, the answer is the
// runner's, and the retry is an audit entry. The runner itself is tested in package migration
// (TestRetryDeadLetters) and end to end in cmd/tandem.
func TestDeadLetterEndpoints(t *testing.T) {
	f := newFixture(t, token)
	ctx := context.Background()
	for i, dir := range []string{catalog.DirectionForward, catalog.DirectionForward, catalog.DirectionReverse} {
		require.NoError(t, f.cat.AddDeadLetter(ctx, catalog.DeadLetter{Migration: migration, KeyString: fmt.Sprintf(`"k%d"`, i), Key: fmt.Sprintf("k%d", i),
			Direction: dir, Step: "forward[0] rename", Reason: "why not", SpecVersion: "v1", Attempts: 1}))
	}
	var asked []string
	retry := func(_ context.Context, name string, all bool) (mig.DeadLetterRetry, error) {
		if name != migration {
			return mig.DeadLetterRetry{}, fmt.Errorf("migration %s is not run by this proxy: %w", name, catalog.ErrNotFound)
		}
		asked = append(asked, fmt.Sprintf("%s all=%v", name, all))
		return mig.DeadLetterRetry{Retried: 2, Resolved: 1, StillFailing: 1, SkippedReverse: 1, SpecVersion: "v2"}, nil
	}
	srv := httptest.NewServer(admin.NewHandler(admin.Config{Flags: f.mgr, Token: token, BackfillCatalog: f.cat, RetryDeadLetters: retry}))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	base := "/v1/migrations/" + migration + "/dead-letters"

	list := func(query string) []admin.DeadLetterEntry {
		t.Helper()
		r := f.call(t, "GET", base+query, bearer, "")
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var out admin.DeadLettersResponse
		require.NoError(t, json.Unmarshal(r.body, &out))
		return out.DeadLetters
	}
	assert.Len(t, list(""), 3)
	assert.Len(t, list("?direction=forward"), 2)
	rev := list("?direction=reverse")
	require.Len(t, rev, 1)
	assert.Equal(t, admin.DeadLetterEntry{Key: `"k2"`, Direction: "reverse", Step: "forward[0] rename", Reason: "why not", SpecVersion: "v1", Attempts: 1,
		FirstSeen: rev[0].FirstSeen, LastSeen: rev[0].LastSeen}, rev[0])
	assert.Len(t, list("?limit=1"), 1)
	for _, q := range []string{"?direction=sideways", "?limit=0", "?limit=x", "?limit=10001"} {
		assert.Equal(t, http.StatusBadRequest, f.call(t, "GET", base+q, bearer, "").status, q)
	}
	assert.Equal(t, http.StatusNotFound, f.call(t, "GET", "/v1/migrations/nobody/dead-letters", bearer, "").status)
	assert.Equal(t, http.StatusUnauthorized, f.call(t, "GET", base, "", "").status)
	c, err := admin.NewClient(srv.URL, token, nil)
	require.NoError(t, err)
	got, err := c.DeadLetters(ctx, migration, "forward", 1)
	require.NoError(t, err)
	assert.Len(t, got, 1)

	before := f.state(t)
	assert.Equal(t, http.StatusUnauthorized, f.call(t, "POST", base+"/retry", "", `{"reason": "r"}`).status)
	r := f.call(t, "POST", base+"/retry", bearer, `{}`)
	assert.Equal(t, http.StatusUnprocessableEntity, r.status)
	assert.Equal(t, admin.CodeReasonRequired, r.errorBody(t).Code)
	assert.Equal(t, http.StatusBadRequest, f.call(t, "POST", base+"/retry", bearer, `{"reason": "r", "every": true}`).status, "unknown field")
	assert.Equal(t, http.StatusNotFound, f.call(t, "POST", "/v1/migrations/nobody/dead-letters/retry", bearer, `{"reason": "r"}`).status)
	assert.Empty(t, asked, "refused calls reach no runner")
	assert.Equal(t, before, f.state(t), "and write no audit entry")

	res, err := c.RetryDeadLetters(ctx, migration, true, "the spec is fixed")
	require.NoError(t, err)
	assert.Equal(t, mig.DeadLetterRetry{Retried: 2, Resolved: 1, StillFailing: 1, SkippedReverse: 1, SpecVersion: "v2"}, res)
	assert.Equal(t, []string{migration + " all=true"}, asked)
	hist, err := f.mgr.History(ctx, migration, 1)
	require.NoError(t, err)
	assert.Equal(t, admin.KindDeadLetters, hist[0].Kind)
	assert.Equal(t, "retry", hist[0].Subject)
	assert.Contains(t, hist[0].Why, "the spec is fixed (every dead letter: 1 resolved, 1 still failing, 1 reverse left for cutover)")

	plain := httptest.NewServer(admin.NewHandler(admin.Config{Flags: f.mgr, Token: token, BackfillCatalog: f.cat}))
	t.Cleanup(plain.Close)
	pf := &fixture{url: plain.URL, mgr: f.mgr, cat: f.cat}
	assert.Equal(t, http.StatusNotImplemented, pf.call(t, "POST", base+"/retry", bearer, `{"reason": "r"}`).status)
}
