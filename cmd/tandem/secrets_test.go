package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/flags"
)

// TestPasswordsNeverLeaveTheOperatorsFiles runs a proxy whose spec holds a password inline (the
// source) and one from the environment (the target), with a catalog URI that holds a third, at
// debug level; uses it through the proxy, the admin API and verify; runs validate; and then
// greps everything tandem printed, answered or stored for the three passwords. Rotating the
// target's password makes no new spec version. FerretDB accepts any user with PLAIN.
func TestPasswordsNeverLeaveTheOperatorsFiles(t *testing.T) {
	store, err := embedmongo.Start(context.Background(), embedmongo.Options{})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	host := strings.TrimSuffix(strings.TrimPrefix(store.URI(), "mongodb://"), "/")
	const (
		sourcePW  = "inline-source-pw-7Qx"
		targetPW  = "env-target-pw-9Kd"
		targetPW2 = "rotated-target-pw-3Fz"
		catalogPW = "catalog-pw-5Wm"
	)
	secrets := []string{sourcePW, targetPW, targetPW2, catalogPW}
	specPath := e2eSpec(t, "mongodb://reader:"+sourcePW+"@"+host+"/?authMechanism=PLAIN",
		"mongodb://${TANDEM_TEST_TARGET_USER}:${TANDEM_TEST_TARGET_PW}@"+host+"/?authMechanism=PLAIN", "secrets")
	catalogURI := "mongodb://tandem:" + catalogPW + "@" + host + "/?authMechanism=PLAIN"

	var seen []string // everything tandem printed, answered or stored
	runProxy := func(pw string) {
		t.Setenv("TANDEM_TEST_TARGET_USER", "writer")
		t.Setenv("TANDEM_TEST_TARGET_PW", pw)
		var logs syncBuffer
		proxyURI, adminURL, out, stop := runCommandLogs(t, &logs, "--log-level", "debug", "proxy",
			"--upstream", store.URI(), "--catalog", catalogURI, "--spec", specPath, "--journal-embedded",
			"--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--admin-token-file", tokenFile(t), "--flags-poll", "50ms")
		api, err := admin.NewClient(adminURL, e2eToken, nil)
		require.NoError(t, err)
		ctx := context.Background()
		if v, err := api.Get(ctx, "users-v2"); err == nil && v.Phase == flags.PhaseOff {
			_, err = api.Advance(ctx, "users-v2", flags.PhaseShadow, "secrets test")
			require.NoError(t, err)
		}
		time.Sleep(200 * time.Millisecond) // the proxy has seen the phase
		app, err := mongo.Connect(options.Client().ApplyURI(proxyURI))
		require.NoError(t, err)
		defer app.Disconnect(ctx)
		users := app.Database("secrets").Collection("users")
		id := "u-" + pw[:3]
		_, err = users.InsertOne(ctx, e2eUser(id, 1))
		require.NoError(t, err)
		_, err = users.UpdateOne(ctx, bson.D{{Key: "age", Value: int32(19)}}, bson.D{{Key: "$set", Value: bson.D{{Key: "age", Value: int32(20)}}}})
		require.NoError(t, err)
		direct, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
		require.NoError(t, err)
		defer direct.Disconnect(ctx)
		require.Eventually(t, func() bool {
			n, err := direct.Database("secrets").Collection("users_v2").CountDocuments(ctx, bson.D{{Key: "_id", Value: id}})
			return err == nil && n == 1
		}, 10*time.Second, 50*time.Millisecond, "the write converged to the target, whose password came from the environment")

		sum, err := api.Verify(ctx, "users-v2", true)
		require.NoError(t, err)
		hist, err := api.History(ctx, "users-v2", 100)
		require.NoError(t, err)
		for _, path := range []string{"/flags", "/history", "/overview", "/status"} {
			code, body := httpGetWithToken(t, adminURL+"/v1/migrations/users-v2"+path, e2eToken)
			require.Equal(t, http.StatusOK, code, "%s: %s", path, body)
			seen = append(seen, body)
		}
		cut, err := api.Cutover(ctx, "users-v2", "secrets test: the gates' answer")
		if err == nil {
			_, err = api.Rollback(ctx, "users-v2", "", "secrets test")
			require.NoError(t, err)
		}
		c, _ := json.Marshal(cut)
		seen = append(seen, string(c))
		_, metrics := httpGet(t, adminURL+"/metrics")
		b, _ := json.Marshal(sum)
		h, _ := json.Marshal(hist)
		seen = append(seen, string(b), string(h), metrics)
		require.NoError(t, stop())
		seen = append(seen, out.String(), logs.String())
		require.Contains(t, logs.String(), "level=DEBUG", "the logs were captured at debug level")
	}
	runProxy(targetPW)
	runProxy(targetPW2) // the operator rotated the target's password

	// What the catalog holds: every document of every collection.
	direct, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	require.NoError(t, err)
	defer direct.Disconnect(context.Background())
	ctx := context.Background()
	meta := direct.Database("tandem_meta")
	names, err := meta.ListCollectionNames(ctx, bson.D{})
	require.NoError(t, err)
	var stored strings.Builder
	for _, name := range names {
		cur, err := meta.Collection(name).Find(ctx, bson.D{})
		require.NoError(t, err)
		for cur.Next(ctx) {
			fmt.Fprintf(&stored, "%s %s\n", name, cur.Current.String())
		}
		require.NoError(t, cur.Err())
	}
	seen = append(seen, stored.String())
	var specs []bson.M
	cur, err := meta.Collection("specs").Find(ctx, bson.D{{Key: "migration", Value: "users-v2"}})
	require.NoError(t, err)
	require.NoError(t, cur.All(ctx, &specs))
	require.Len(t, specs, 1, "rotating a password makes no new spec version")
	content, _ := specs[0]["content"].(string)
	assert.Contains(t, content, "mongodb://REDACTED@"+host, "the stored spec has the inline credentials removed")
	assert.Contains(t, content, "mongodb://${TANDEM_TEST_TARGET_USER}:${TANDEM_TEST_TARGET_PW}@"+host, "the stored spec keeps the references, not their values")

	// validate, with a round trip through both stores and with a store it cannot reach.
	t.Setenv("TANDEM_TEST_TARGET_PW", targetPW)
	out, err := runTandem(t, "validate", specPath, "--sample", "5")
	require.NoError(t, err, out)
	assert.Contains(t, out, "round-trip exactly")
	seen = append(seen, out)
	unreachable := filepath.Join(t.TempDir(), "unreachable.yaml")
	spec, err := os.ReadFile(specPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(unreachable, []byte(strings.ReplaceAll(string(spec), host, "127.0.0.1:1")), 0o600))
	out, err = runTandem(t, "validate", unreachable, "--sample", "5", "--connect-timeout", "500ms")
	require.Error(t, err)
	seen = append(seen, out, err.Error())

	all := strings.Join(seen, "\n")
	for _, pw := range secrets {
		assert.NotContains(t, all, pw, "a password was printed, answered or stored")
	}
}
