package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/migration"
)

// TestDeadLettersConvergeAgain runs `tandem proxy` with a spec over a catalog that holds dead
// letters of an older spec version: once the phase converges, the runner's dead-letter-retry
// path converges them by itself; one recorded later is listed by `tandem dead-letters list` and
// converged by `tandem dead-letters retry`, which the audit trail records.
func TestDeadLettersConvergeAgain(t *testing.T) {
	store, err := embedmongo.Start(context.Background(), embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	ctx := context.Background()
	direct, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = direct.Disconnect(context.Background()) })
	cat, err := catalog.Open(ctx, direct)
	require.NoError(t, err)
	users, usersV2 := direct.Database("dl").Collection("users"), direct.Database("dl").Collection("users_v2")
	deadLetter := func(id string) {
		t.Helper()
		_, err := users.InsertOne(ctx, e2eUser(id, 1))
		require.NoError(t, err)
		require.NoError(t, cat.AddDeadLetter(ctx, catalog.DeadLetter{Migration: "users-v2", KeyString: adapters.KeyString(id), Key: id,
			Direction: catalog.DirectionForward, Step: "forward[1] convert age", Reason: "a bug of the old spec", SpecVersion: "an-older-version", Attempts: 2}))
	}
	inNew := func(id string) bool {
		n, err := usersV2.CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
		return err == nil && n == 1
	}
	deadLetter("u1")

	specPath := e2eSpec(t, store.URI(), store.URI(), "dl")
	_, adminURL, _, stop := runCommand(t, "proxy", "--upstream", store.URI(), "--spec", specPath,
		"--journal-embedded", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--admin-token-file", tokenFile(t), "--flags-poll", "50ms")
	api, err := admin.NewClient(adminURL, e2eToken, nil)
	require.NoError(t, err)
	dls, err := api.DeadLetters(ctx, "users-v2", "", 0)
	require.NoError(t, err)
	require.Len(t, dls, 1, "phase off: nothing converges, the dead letter waits")
	_, err = api.Advance(ctx, "users-v2", flags.PhaseShadow, "dead-letter test")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		dls, err := api.DeadLetters(ctx, "users-v2", "", 0)
		return err == nil && len(dls) == 0 && inNew("u1")
	}, 20*time.Second, 50*time.Millisecond, "the retry path converges the older version's dead letter")
	st, err := api.Status(ctx, "users-v2")
	require.NoError(t, err)
	for _, p := range st.Paths {
		if p.Name == migration.PathDeadLetterRetry {
			assert.Equal(t, migration.StateDone, p.State)
		}
	}

	deadLetter("u2")
	t.Setenv(envAdminURL, adminURL)
	t.Setenv(envAdminToken, e2eToken)
	out, err := runTandem(t, "dead-letters", "list", "users-v2")
	require.NoError(t, err, out)
	assert.Contains(t, out, "users-v2: 1 dead letter(s)")
	assert.Contains(t, out, `"u2"`)
	assert.Contains(t, out, "a bug of the old spec")
	out, err = runTandem(t, "dead-letters", "retry", "users-v2")
	require.Error(t, err, "a retry needs a reason")
	out, err = runTandem(t, "dead-letters", "retry", "users-v2", "--reason", "the spec is fixed")
	require.NoError(t, err, out)
	assert.Contains(t, out, "users-v2: 1 dead letter(s) retried: 1 resolved, 0 still failing")
	assert.True(t, inNew("u2"))
	out, err = runTandem(t, "dead-letters", "list", "users-v2")
	require.NoError(t, err, out)
	assert.Contains(t, out, "users-v2: no dead letters")
	hist, err := api.History(ctx, "users-v2", 1)
	require.NoError(t, err)
	require.Len(t, hist, 1)
	assert.Equal(t, admin.KindDeadLetters, hist[0].Kind)
	assert.Contains(t, hist[0].Why, "the spec is fixed")
	require.NoError(t, stop())
}
