package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/migration"
)

// TestStatusFollowsThePhase runs `tandem proxy` with a spec and reads the migration's status
// through the admin API while the phase moves: the policy follows the flags, the watchdog runs
// only in dual, and the journal worker is listed as the process's shared path.
func TestStatusFollowsThePhase(t *testing.T) {
	store, err := embedmongo.Start(context.Background(), embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	specPath := e2eSpec(t, store.URI(), store.URI(), "status")
	_, adminURL, _, stop := runCommand(t, "proxy", "--upstream", store.URI(), "--spec", specPath,
		"--journal-embedded", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--admin-token-file", tokenFile(t), "--flags-poll", "50ms")
	api, err := admin.NewClient(adminURL, e2eToken, nil)
	require.NoError(t, err)
	ctx := context.Background()

	path := func(st migration.Status, name string) migration.PathStatus {
		for _, p := range st.Paths {
			if p.Name == name {
				return p
			}
		}
		return migration.PathStatus{}
	}
	expect := func(phase string, watchdog migration.PathState) migration.Status {
		t.Helper()
		var st migration.Status
		require.Eventually(t, func() bool {
			st, err = api.Status(ctx, "users-v2")
			return err == nil && st.Policy.Phase == phase && path(st, "watchdog").State == watchdog
		}, 10*time.Second, 20*time.Millisecond, "phase %s, watchdog %s: %+v %v", phase, watchdog, st, err)
		return st
	}

	st := expect(flags.PhaseOff, migration.StateStopped)
	assert.True(t, st.Running)
	assert.Equal(t, "status.users", st.Namespace)
	assert.Equal(t, flags.ConvergeNone, st.Policy.WriteConverge)
	jw := path(st, migration.PathJournal)
	assert.True(t, jw.Shared)
	assert.Equal(t, migration.StateRunning, jw.State)

	_, err = api.Advance(ctx, "users-v2", flags.PhaseShadow, "status test")
	require.NoError(t, err)
	st = expect(flags.PhaseShadow, migration.StateStopped)
	assert.Equal(t, flags.ConvergeAsync, st.Policy.WriteConverge)

	_, err = api.Advance(ctx, "users-v2", flags.PhaseDual, "status test")
	require.NoError(t, err)
	st = expect(flags.PhaseDual, migration.StateRunning)
	assert.Equal(t, flags.FailureOldReply, st.Policy.OnConvergeFailure)
	assert.True(t, path(st, "watchdog").Wanted)

	_, err = api.Rollback(ctx, "users-v2", "", "status test")
	require.NoError(t, err)
	expect(flags.PhaseShadow, migration.StateStopped)

	_, err = api.Status(ctx, "nobody")
	assert.ErrorIs(t, err, flags.ErrNotFound)
	require.NoError(t, stop())
}
