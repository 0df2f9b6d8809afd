package main

import (
	"context"
	"fmt"
	"math/rand/v2"
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
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
)

// TestRunChangeCaptureBothWays runs `tandem run --cdc on` on mongo-java-server (change streams)
// with the proxy not involved in any write: in shadow, writes made straight into the old
// collection while the backfill copies its history reach the new one through the forward change
// stream, until a full verification is clean; in cutover, writes made straight into the new
// collection reach the old one through the reverse stream, and after a rollback the old store
// holds them.
func TestRunChangeCaptureBothWays(t *testing.T) {
	mj := testenv.StartMongoJavaT(t, testenv.MongoJavaOptions{})
	ctx := context.Background()
	direct, err := mongo.Connect(options.Client().ApplyURI(mj.URI()))
	require.NoError(t, err)
	defer direct.Disconnect(ctx)
	old := direct.Database("runcdc").Collection("users")
	newColl := direct.Database("runcdc").Collection("users_v2")
	const n = 60
	docs := make([]any, n)
	for i := range docs {
		docs[i] = e2eUser(fmt.Sprintf("h%04d", i), i)
	}
	_, err = old.InsertMany(ctx, docs)
	require.NoError(t, err)
	specPath := e2eSpec(t, mj.URI(), mj.URI(), "runcdc")
	spec, err := loadSpecFile(specPath, storeOverrides{})
	require.NoError(t, err)

	_, adminURL, _, stop := runCommand(t, "run", "--upstream", mj.URI(), "--spec", specPath, "--cdc", "on",
		"--journal-embedded", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--admin-token-file", tokenFile(t),
		"--flags-poll", "50ms", "--batch", "10", "--workers", "2", "--partitions", "2", "--rate", "40")
	api, err := admin.NewClient(adminURL, e2eToken, nil)
	require.NoError(t, err)
	cat, err := catalog.Open(ctx, direct)
	require.NoError(t, err)
	streams, err := cat.CDCStreams(ctx, "users-v2")
	require.NoError(t, err)
	require.Len(t, streams, 2, "tandem run took both start positions before any path ran")

	_, err = api.Advance(ctx, "users-v2", flags.PhaseShadow, "change capture while others write")
	require.NoError(t, err)
	// Straight into old, while the backfill copies (at 40 documents/s): every kind of write.
	rng := rand.New(rand.NewPCG(7, 10))
	var duringCopy int
	for i := range 150 {
		id := fmt.Sprintf("h%04d", rng.IntN(n+20))
		f := bson.D{{Key: "_id", Value: id}}
		switch rng.IntN(5) {
		case 0:
			_, err = old.InsertOne(ctx, e2eUser(id, 500+i))
			if mongo.IsDuplicateKeyError(err) {
				err = nil
			}
		case 1:
			_, err = old.UpdateOne(ctx, f, bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: fmt.Sprintf("Direct %d", i)}}}})
		case 2:
			_, err = old.ReplaceOne(ctx, f, e2eUser(id, 900+i)[1:], options.Replace().SetUpsert(true))
		case 3:
			err = old.FindOneAndUpdate(ctx, f, bson.D{{Key: "$set", Value: bson.D{{Key: "email", Value: fmt.Sprintf("f%d@example.org", i)}}}}).Err()
			if err == mongo.ErrNoDocuments {
				err = nil
			}
		default:
			_, err = old.DeleteOne(ctx, f)
		}
		require.NoError(t, err)
		if p, err := backfill.Status(ctx, cat, "users-v2"); err == nil && p.PartitionsDone < p.Partitions {
			duringCopy++
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%d of 150 direct writes while the backfill copied", duringCopy)
	require.Eventually(t, func() bool {
		p, err := backfill.Status(ctx, cat, "users-v2")
		return err == nil && p.Partitions > 0 && p.PartitionsDone == p.Partitions
	}, 3*time.Minute, 200*time.Millisecond, "the backfill finishes")
	var sum catalog.VerifySummary
	require.Eventually(t, func() bool {
		sum, err = api.Verify(ctx, "users-v2", false)
		return err == nil && sum.Clean
	}, time.Minute, 500*time.Millisecond, "verification is clean: %+v %v", sum, err)
	fwd, err := cat.CDCStream(ctx, "users-v2", cdc.PathForward)
	require.NoError(t, err)
	assert.Positive(t, fwd.Applied, "the forward stream applied the direct writes")
	st, err := api.Status(ctx, "users-v2")
	require.NoError(t, err)
	states := map[string]string{}
	for _, p := range st.Paths {
		states[p.Name] = string(p.State)
	}
	assert.Equal(t, "running", states[string(flags.PathForwardCDC)], "%+v", st.Paths)
	assert.Equal(t, "stopped", states[string(flags.PathReverseCDC)], "reverse runs only from cutover: %+v", st.Paths)

	// Cutover: the gates read the forward lag from the catalog.
	cutOver(t, ctx, api, "users-v2", "change capture both ways")

	// Straight into new: a new-schema application.
	raw, err := bson.Marshal(e2eUser("n0001", 7))
	require.NoError(t, err)
	var oldShape bson.D // as a store returns it (bson.DateTime, not time.Time)
	require.NoError(t, bson.Unmarshal(raw, &oldShape))
	newDoc, err := spec.Forward(oldShape)
	require.NoError(t, err)
	_, err = newColl.InsertOne(ctx, newDoc)
	require.NoError(t, err)
	_, err = newColl.UpdateOne(ctx, bson.D{{Key: "_id", Value: "h0001"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "profile.full_name", Value: "Written to new"}}}})
	require.NoError(t, err)
	want, err := spec.Reverse(newDoc)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var got bson.D
		if err := old.FindOne(ctx, bson.D{{Key: "_id", Value: "n0001"}}).Decode(&got); err != nil {
			return false
		}
		var h bson.M
		if err := old.FindOne(ctx, bson.D{{Key: "_id", Value: "h0001"}}).Decode(&h); err != nil {
			return false
		}
		return transform.Equal(want, got) && h["name"] == "Written to new"
	}, time.Minute, 100*time.Millisecond, "the writes made to new reach old")

	// A write to new right before the rollback: the reverse path stops at once, and what it had
	// not converged yet is drained after the rollback (reverse-cdc-drain).
	res, err := newColl.UpdateOne(ctx, bson.D{{Key: "_id", Value: "n0001"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "profile.full_name", Value: "Just before the rollback"}}}})
	require.NoError(t, err)
	require.EqualValues(t, 1, res.ModifiedCount)
	_, err = api.Rollback(ctx, "users-v2", "", "roll back after new-schema writes")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var h bson.M
		return old.FindOne(ctx, bson.D{{Key: "_id", Value: "n0001"}}).Decode(&h) == nil && h["name"] == "Just before the rollback"
	}, time.Minute, 100*time.Millisecond, "the write made to new just before the rollback reaches old")
	sum, err = api.Verify(ctx, "users-v2", false)
	require.NoError(t, err)
	assert.True(t, sum.Clean, "after the rollback old and new agree: %+v", sum)
	var h bson.M
	require.NoError(t, old.FindOne(ctx, bson.D{{Key: "_id", Value: "h0001"}}).Decode(&h))
	assert.Equal(t, "Written to new", h["name"], "the old store holds the write made to new")
	require.NoError(t, stop())
}

// cutOver moves a running migration through dual to cutover once its gates pass, and waits for
// its reverse path to run.
func cutOver(t *testing.T, ctx context.Context, api *admin.Client, name, reason string) {
	t.Helper()
	_, err := api.Advance(ctx, name, flags.PhaseDual, "towards cutover")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err = api.Cutover(ctx, name, reason)
		return err == nil
	}, time.Minute, 500*time.Millisecond, "cutover passes its gates: %v", err)
	require.Eventually(t, func() bool {
		st, err := api.Status(ctx, name)
		require.NoError(t, err)
		for _, p := range st.Paths {
			if p.Name == string(flags.PathReverseCDC) {
				return p.State == "running"
			}
		}
		return false
	}, time.Minute, 100*time.Millisecond, "the reverse path runs in cutover")
}
