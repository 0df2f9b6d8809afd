package admin_test

import (
	"context"
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
	mig "github.com/tandemdb/tandem/migration"
)

// TestStatusEndpoint: GET /v1/migrations/{name}/status answers with what Config.Status
// reports, 404 for a migration the server does not run, 501 on a server without runtime, and
// needs no token.
func TestStatusEndpoint(t *testing.T) {
	f := newFixture(t, token)
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	want := mig.Status{
		Migration: migration, SpecVersion: "v1", Namespace: "app.users", Target: "mongodb app.users_v2", Running: true,
		Flags:      flags.Values{Phase: flags.PhaseDual, ReadSource: flags.ReadOld, Revision: 3},
		Policy:     flags.PolicyFor(flags.Values{Phase: flags.PhaseDual, ReadSource: flags.ReadOld}),
		PhaseSince: at,
		Paths: []mig.PathStatus{
			{Name: "watchdog", State: mig.StateRunning, Since: at, Wanted: true},
			{Name: "backfill", State: mig.StateBackingOff, Since: at, Wanted: true, Restarts: 2,
				LastError: "reading the old store: connection refused", LastErrorAt: at, RetryAt: at.Add(time.Second)},
			{Name: mig.PathJournal, State: mig.StateRunning, Since: at, Wanted: true, Shared: true},
		},
	}
	status := func(_ context.Context, name string) (mig.Status, error) {
		if name != migration {
			return mig.Status{}, fmt.Errorf("migration %s is not run by this proxy: %w", name, catalog.ErrNotFound)
		}
		return want, nil
	}
	srv := httptest.NewServer(admin.NewHandler(admin.Config{Flags: f.mgr, Status: status, OpenReads: true}))
	t.Cleanup(srv.Close)
	c, err := admin.NewClient(srv.URL, "", nil) // no token: a read, and reads are open
	require.NoError(t, err)
	ctx := context.Background()

	got, err := c.Status(ctx, migration)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	_, err = c.Status(ctx, "nobody")
	assert.ErrorIs(t, err, flags.ErrNotFound)
	var e *admin.Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusNotFound, e.Status)

	resp, err := http.Post(srv.URL+"/v1/migrations/"+migration+"/status", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)

	// The fixture's handler has no Status.
	plain, err := admin.NewClient(f.url, token, nil)
	require.NoError(t, err)
	_, err = plain.Status(ctx, migration)
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusNotImplemented, e.Status)
}
