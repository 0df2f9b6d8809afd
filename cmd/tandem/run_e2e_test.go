package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/flags"
)

// TestRunBackfillsWhileTheApplicationWrites runs `tandem run` on a collection with history:
// in phase shadow its backfill copies the history while an application updates, replaces and
// deletes those same documents through the proxy; when the backfill is done and the writes
// have converged, a full verification is clean.
func TestRunBackfillsWhileTheApplicationWrites(t *testing.T) {
	store, err := embedmongo.Start(context.Background(), embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	ctx := context.Background()
	direct, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	require.NoError(t, err)
	defer direct.Disconnect(ctx)
	const n = 120 // the embedded FerretDB under the race detector copies a few documents/s while the writers run
	docs := make([]any, n)
	for i := range docs {
		docs[i] = e2eUser(fmt.Sprintf("h%04d", i), i)
	}
	_, err = direct.Database("runbf").Collection("users").InsertMany(ctx, docs)
	require.NoError(t, err)
	specPath := e2eSpec(t, store.URI(), store.URI(), "runbf")

	proxyURI, adminURL, out, stop := runCommand(t, "run", "--upstream", store.URI(), "--spec", specPath,
		"--journal-embedded", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--admin-token-file", tokenFile(t),
		"--flags-poll", "50ms", "--batch", "20", "--workers", "2", "--partitions", "2")
	assert.Contains(t, out.String(), "tandem run: applications connect to")
	api, err := admin.NewClient(adminURL, e2eToken, nil)
	require.NoError(t, err)
	cat, err := catalog.Open(ctx, direct)
	require.NoError(t, err)
	_, err = backfill.Status(ctx, cat, "users-v2")
	require.ErrorIs(t, err, backfill.ErrNotStarted, "no backfill in phase off")

	app, err := mongo.Connect(options.Client().ApplyURI(proxyURI))
	require.NoError(t, err)
	defer app.Disconnect(ctx)
	users := app.Database("runbf").Collection("users")
	_, err = api.Advance(ctx, "users-v2", flags.PhaseShadow, "backfill while the application writes")
	require.NoError(t, err)

	// The application: writers on the history's keys until the backfill is done.
	stopWrites := make(chan struct{})
	var wg sync.WaitGroup
	var writes, duringCopy atomic.Int64
	var errMu sync.Mutex
	var writeErrs []string
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for i := 0; ; i++ {
				select {
				case <-stopWrites:
					return
				default:
				}
				// Each writer has keys of its own: two concurrent upserts of one missing key can
				// both insert on FerretDB (E11000), as they can on MongoDB, through the proxy or not.
				id := fmt.Sprintf("h%04d", 2*rng.IntN(n/2)+w)
				opCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
				var err error
				switch r := rng.IntN(10); {
				case r < 5:
					_, err = users.UpdateOne(opCtx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: fmt.Sprintf("Updated %d/%d", w, i)}}}})
				case r < 8:
					_, err = users.ReplaceOne(opCtx, bson.D{{Key: "_id", Value: id}}, e2eUser(id, 1000+i), options.Replace().SetUpsert(true))
				default:
					_, err = users.DeleteOne(opCtx, bson.D{{Key: "_id", Value: id}})
				}
				cancel()
				if err != nil {
					errMu.Lock()
					writeErrs = append(writeErrs, err.Error())
					errMu.Unlock()
					continue
				}
				writes.Add(1)
				time.Sleep(20 * time.Millisecond) // an application's pace, not a load test
				if p, err := backfill.Status(ctx, cat, "users-v2"); err == nil && p.PartitionsDone < p.Partitions {
					duringCopy.Add(1)
				}
			}
		}()
	}
	var last backfill.Progress
	require.Eventually(t, func() bool {
		p, err := backfill.Status(ctx, cat, "users-v2")
		if err == nil && p.Copied != last.Copied {
			t.Logf("backfill: %s", progressLine(p))
		}
		last = p
		return err == nil && p.Partitions > 0 && p.PartitionsDone == p.Partitions
	}, 3*time.Minute, 200*time.Millisecond, "the backfill finishes: %+v", last)
	close(stopWrites)
	wg.Wait()
	assert.Empty(t, writeErrs, "no write failed through the proxy")
	assert.Positive(t, duringCopy.Load(), "some writes raced the copy (%d writes in all)", writes.Load())

	st, err := api.Status(ctx, "users-v2")
	require.NoError(t, err)
	found := false
	for _, p := range st.Paths {
		found = found || p.Name == string(flags.PathBackfill)
	}
	assert.True(t, found, "the runner lists its backfill path: %+v", st.Paths)

	// The shadow writer converges asynchronously: the last writes land within moments.
	var sum catalog.VerifySummary
	require.Eventually(t, func() bool {
		sum, err = api.Verify(ctx, "users-v2", false)
		return err == nil && sum.Clean
	}, 30*time.Second, time.Second, "verification is clean: %+v %v", sum, err)
	var count int64
	count, err = direct.Database("runbf").Collection("users").CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.Equal(t, count, sum.Keys, "every key of the old store compared")
	require.NoError(t, stop())
}
