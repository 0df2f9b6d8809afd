// Package admintest puts a migration in trouble into a catalog, for the tests of what shows a
// migration to an operator: the overview and the dashboard (package admin) and "tandem status"
// (cmd/tandem). It is imported by tests only.
package admintest

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/transform"
	"github.com/tandemdb/tandem/verify"
)

// Scene is what Seed put in the catalog.
type Scene struct {
	// Backfill is the planned backfill's configuration: its Old and New stores are the
	// scene's collections.
	Backfill backfill.Config
}

// Seed fills the catalog with a part of every section of migration's overview: docs documents
// in database db's users collection, a backfill of them planned in partitions and not copied, a
// forward change stream 1.5 s behind, a reverse one that lost its history, a forward dead
// letter (key "u007", "profile is not a document"), and a verification run that confirmed
// every document missing from the new store. The migration must be registered already; its
// phase is the caller's. The database is dropped when the test ends.
func Seed(t testing.TB, client *mongo.Client, cat *catalog.Catalog, migration, db string, docs, partitions int) Scene {
	t.Helper()
	ctx := context.Background()
	cfg := Backfill(t, client, cat, migration, db, docs, partitions)
	_, err := backfill.Prepare(ctx, cfg)
	require.NoError(t, err)

	_, _, err = cat.StartCDCStream(ctx, migration, "forward-cdc", "mongo change stream "+db+".users", nil)
	require.NoError(t, err)
	pos, err := bson.Marshal(bson.D{{Key: "t", Value: 1}})
	require.NoError(t, err)
	require.NoError(t, cat.SaveCDCPosition(ctx, migration, "forward-cdc", pos, time.Now().Add(-2*time.Second), 42))
	require.NoError(t, cat.ReportLag(ctx, migration, "cdc-forward", 1500*time.Millisecond))
	_, _, err = cat.StartCDCStream(ctx, migration, "reverse-cdc", "mongo change stream "+db+".users_v2", nil)
	require.NoError(t, err)
	require.NoError(t, cat.SetCDCState(ctx, migration, "reverse-cdc", catalog.CDCHistoryLost,
		"the oplog no longer holds the resume token; resync with tandem cdc resync"))
	require.NoError(t, cat.AddDeadLetter(ctx, catalog.DeadLetter{
		Migration: migration, KeyString: `"u007"`, Key: "u007", Direction: catalog.DirectionForward,
		Step: "forward[0] rename", Reason: "profile is not a document", SpecVersion: "v1", Attempts: 3,
	}))
	sum, _ := verify.Run(ctx, verify.Config{
		Migration: migration, Old: cfg.Old, New: cfg.New, Forward: cfg.Spec.Forward, Catalog: cat,
		Partitions: 2, Batch: 20, Concurrency: 2,
	})
	require.Empty(t, sum.Aborted)
	return Scene{Backfill: cfg}
}

// Backfill is a backfill of migration over docs documents it inserts into database db's users
// collection ("u000", … with a name), renaming name to profile.name into users_v2, in the given
// partitions; it plans and copies nothing. The database is dropped when the test ends.
func Backfill(t testing.TB, client *mongo.Client, cat *catalog.Catalog, migration, db string, docs, partitions int) backfill.Config {
	t.Helper()
	ctx := context.Background()
	t.Cleanup(func() { _ = client.Database(db).Drop(context.Background()) })
	src := client.Database(db).Collection("users")
	batch := make([]any, docs)
	for i := range batch {
		batch[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("u%03d", i)}, {Key: "name", Value: fmt.Sprintf("user %d", i)}}
	}
	_, err := src.InsertMany(ctx, batch)
	require.NoError(t, err)
	spec, err := transform.Parse("spec.yaml", []byte(fmt.Sprintf(`name: %s
source: {mongodb: {uri: "mongodb://h/", database: %s, collection: users}}
target: {mongodb: {uri: "mongodb://h/", database: %s, collection: users_v2}}
forward:
  - rename: {from: name, to: profile.name}
`, migration, db, db)))
	require.NoError(t, err)
	return backfill.Config{
		Migration: migration, Spec: spec, Catalog: cat,
		Old: adapters.NewMongoStore(src), New: adapters.NewMongoStore(client.Database(db).Collection("users_v2")),
		// Nothing writes to the source while the tests copy, so no key is converged again.
		Reconverge: func(context.Context, adapters.Key) error { return nil },
		// The default lease (30s): renewals then have 10s to land on a busy FerretDB.
		Workers: 2, Partitions: partitions, Batch: 50, Chunk: 25, Poll: 50 * time.Millisecond,
		Log: slog.New(slog.DiscardHandler),
	}
}
