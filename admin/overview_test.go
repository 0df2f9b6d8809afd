package admin_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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

// scene is a migration with a part of everything an operator looks at: phase shadow, a
// backfill planned over 60 documents and not copied yet, a forward change stream 1.5 s behind,
// a reverse one that lost its history, a dead letter, and a verification run that found the
// 60 documents missing from the new store.
type scene struct {
	*fixture
	cfg backfill.Config
}

func newScene(t *testing.T, cfg admin.Config) *scene {
	t.Helper()
	ctx := context.Background()
	f := newFixture(t, token)
	_, err := f.mgr.Advance(ctx, migration, flags.PhaseShadow, "test:ada", "start shadowing")
	require.NoError(t, err)
	sc := admintest.Seed(t, client, f.cat, migration, fmt.Sprintf("tandem_admin_scene_%d", dbSeq.Add(1)), 60, 3)
	s := &scene{fixture: f, cfg: sc.Backfill}
	cfg.Flags, cfg.BackfillCatalog = f.mgr, f.cat
	if cfg.Token == "" {
		cfg.Token = token
	}
	srv := httptest.NewServer(admin.NewHandler(cfg))
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return s
}

func (r reply) overview(t *testing.T) admin.Overview {
	t.Helper()
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var o admin.Overview
	require.NoError(t, json.Unmarshal(r.body, &o))
	return o
}

// TestOverviewShowsEveryPart reads the scene's overview and checks each section against what
// the scene put in the catalog, and the problems it must raise with their runbooks.
func TestOverviewShowsEveryPart(t *testing.T) {
	s := newScene(t, admin.Config{})
	o := s.call(t, "GET", "/v1/migrations/"+migration+"/overview", bearer, "").overview(t)

	assert.Empty(t, o.Errors, "every section could be read")
	assert.Equal(t, flags.PhaseShadow, o.Flags.Phase)
	assert.Equal(t, flags.PhaseDual, o.NextPhase)
	require.Len(t, o.Gates, 3, "the three cutover gates")
	gates := map[string]flags.GateResult{}
	for _, g := range o.Gates {
		gates[g.Gate] = g
	}
	assert.False(t, gates[flags.GateVerification].OK, "60 missing documents: %s", gates[flags.GateVerification].Detail)
	assert.True(t, gates[flags.GateChangeLag].OK, "1.5 s of lag: %s", gates[flags.GateChangeLag].Detail)
	assert.True(t, gates[flags.GateReversePath].OK, "no reverse dead letter: %s", gates[flags.GateReversePath].Detail)
	assert.Nil(t, o.Runtime, "no runtime on this server")

	require.NotNil(t, o.Backfill)
	assert.Equal(t, backfill.StateRunning, o.Backfill.State)
	assert.Equal(t, 3, o.Backfill.Partitions)
	require.Len(t, o.Backfill.PartitionList, 3)
	var est int64
	for i, p := range o.Backfill.PartitionList {
		assert.Equal(t, i, p.Index)
		assert.Equal(t, backfill.PartitionWaiting, p.State)
		est += p.Estimate
	}
	assert.Equal(t, int64(60), est, "the partitions' estimates add up to the plan's")

	require.Len(t, o.Streams, 2)
	fwd, rev := o.Streams[0], o.Streams[1]
	assert.Equal(t, "forward", fwd.Direction)
	assert.Equal(t, catalog.CDCRunning, fwd.State)
	assert.True(t, fwd.LagKnown)
	assert.Equal(t, 1500*time.Millisecond, fwd.Lag)
	assert.Equal(t, int64(42), fwd.Applied)
	assert.Equal(t, "reverse", rev.Direction)
	assert.Equal(t, catalog.CDCHistoryLost, rev.State)
	assert.False(t, rev.LagKnown)
	require.Len(t, o.Lags, 1)
	assert.Equal(t, "cdc-forward", o.Lags[0].Component)

	require.NotNil(t, o.Verify)
	assert.Equal(t, int64(60), o.Verify.Compared)
	assert.NotEmpty(t, o.Drift, "the run's drift points")
	require.NotEmpty(t, o.Mismatches)
	assert.LessOrEqual(t, len(o.Mismatches), 20)
	for _, m := range o.Mismatches {
		assert.Equal(t, catalog.KindMissing, m.Kind)
		for _, fd := range m.Fields {
			assert.Nil(t, fd.Want, "no values in the overview")
			assert.Nil(t, fd.Got)
		}
	}

	assert.Equal(t, int64(1), o.DeadLetters.Forward)
	assert.Equal(t, int64(0), o.DeadLetters.Reverse)
	require.Len(t, o.DeadLetters.Oldest, 1)
	assert.Equal(t, `"u007"`, o.DeadLetters.Oldest[0].Key)
	assert.Equal(t, "profile is not a document", o.DeadLetters.Oldest[0].Reason)

	require.NotEmpty(t, o.Audit)
	assert.Equal(t, "test:ada", o.Audit[0].Who, "the newest entry first: the move to shadow")
	assert.Equal(t, flags.PhaseShadow, o.Audit[0].To)

	byComponent := map[string]admin.Problem{}
	for _, p := range o.Problems {
		byComponent[p.Component] = p
	}
	require.Contains(t, byComponent, "reverse-cdc")
	assert.Equal(t, admin.SeverityCritical, byComponent["reverse-cdc"].Severity)
	assert.Equal(t, admin.RunbookHistoryLost, byComponent["reverse-cdc"].Runbook)
	assert.Contains(t, byComponent["reverse-cdc"].Message, "resync")
	require.Contains(t, byComponent, "dead-letters")
	assert.Equal(t, admin.RunbookDeadLettersGrowing, byComponent["dead-letters"].Runbook)
	require.Contains(t, byComponent, "verify", "60 confirmed mismatches over a budget of 0")
	assert.Equal(t, admin.SeverityCritical, o.Problems[0].Severity, "the worst first")
	assert.NotContains(t, byComponent, "forward-cdc", "1.5 s of lag is no problem")

	// The client reads the same, and lists the migrations.
	c, err := admin.NewClient(s.url, token, nil)
	require.NoError(t, err)
	co, err := c.Overview(context.Background(), migration)
	require.NoError(t, err)
	assert.Equal(t, len(o.Problems), len(co.Problems))
	ms, err := c.Migrations(context.Background())
	require.NoError(t, err)
	require.Len(t, ms, 1)
	assert.Equal(t, admin.MigrationSummary{Name: migration, Phase: flags.PhaseShadow, Revision: ms[0].Revision, SpecVersion: "v1", UpdatedAt: ms[0].UpdatedAt}, ms[0])

	_, err = c.Overview(context.Background(), "nobody")
	assert.ErrorIs(t, err, flags.ErrNotFound)
	r := s.call(t, "GET", "/v1/migrations/"+migration+"/overview", "", "")
	assert.Equal(t, http.StatusUnauthorized, r.status, "the overview needs the token")
}

// TestEventsStreamTheOverview reads two overviews from the event stream, the second after a
// change, and checks that an unknown migration gets a plain 404 rather than a stream.
func TestEventsStreamTheOverview(t *testing.T) {
	s := newScene(t, admin.Config{EventInterval: 100 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/v1/migrations/"+migration+"/events", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", bearer)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))

	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	next := func() admin.Overview {
		t.Helper()
		event := ""
		for lines.Scan() {
			l := lines.Text()
			switch {
			case strings.HasPrefix(l, "event: "):
				event = strings.TrimPrefix(l, "event: ")
			case strings.HasPrefix(l, "data: "):
				require.Equal(t, "overview", event)
				var o admin.Overview
				require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(l, "data: ")), &o))
				return o
			}
		}
		require.NoError(t, lines.Err())
		t.Fatal("the stream ended")
		return admin.Overview{}
	}
	first := next()
	assert.Equal(t, flags.PhaseShadow, first.Flags.Phase)
	require.NoError(t, backfill.Pause(ctx, s.cat, migration, "test", "look"))
	var later admin.Overview
	for range 50 {
		if later = next(); later.Backfill != nil && later.Backfill.Paused {
			break
		}
	}
	require.NotNil(t, later.Backfill)
	assert.True(t, later.Backfill.Paused, "a later event shows the pause")
	assert.Equal(t, backfill.StatePaused, later.Backfill.State)

	r := s.call(t, "GET", "/v1/migrations/nobody/events", bearer, "")
	assert.Equal(t, http.StatusNotFound, r.status)
	assert.Equal(t, admin.CodeNotFound, r.errorBody(t).Code)
	assert.Equal(t, http.StatusUnauthorized, s.call(t, "GET", "/v1/migrations/"+migration+"/events", "", "").status)
}

// TestRunbooksExist: every runbook a problem may name is a file of the repository.
func TestRunbooksExist(t *testing.T) {
	for _, rb := range admin.Runbooks {
		_, err := os.Stat(filepath.Join("..", rb))
		assert.NoError(t, err, "runbook %s", rb)
	}
}
