package catalog_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/testenv"
)

var client *mongo.Client

func TestMain(m *testing.M) { testenv.MongoMain(m, &client) }

var dbSeq atomic.Int64

// open returns a catalog in a database of its own.
func open(t *testing.T) (*catalog.Catalog, string) {
	t.Helper()
	name := fmt.Sprintf("tandem_meta_test_%d", dbSeq.Add(1))
	c, err := catalog.Open(context.Background(), client, catalog.WithDatabase(name))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Database(name).Drop(context.Background()) })
	return c, name
}

func TestOpenIsIdempotentAndConcurrent(t *testing.T) {
	name := fmt.Sprintf("tandem_meta_test_%d", dbSeq.Add(1))
	t.Cleanup(func() { _ = client.Database(name).Drop(context.Background()) })
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := catalog.Open(context.Background(), client, catalog.WithDatabase(name))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	n, err := client.Database(name).Collection("schema").CountDocuments(context.Background(), bson.D{})
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
}

func TestOpenRefusesANewerSchema(t *testing.T) {
	_, name := open(t)
	_, err := client.Database(name).Collection("schema").UpdateOne(context.Background(),
		bson.D{{Key: "_id", Value: "schema"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "version", Value: catalog.SchemaVersion + 1}}}})
	require.NoError(t, err)
	_, err = catalog.Open(context.Background(), client, catalog.WithDatabase(name))
	assert.ErrorIs(t, err, catalog.ErrSchemaTooNew)
	_, err = catalog.Open(context.Background(), client, catalog.WithDatabase(""))
	assert.Error(t, err)
}

func TestSpecsAndPhasesWithAudit(t *testing.T) {
	c, _ := open(t)
	ctx := context.Background()

	_, err := c.Migration(ctx, "users")
	assert.ErrorIs(t, err, catalog.ErrNotFound)

	changed, err := c.RegisterSpec(ctx, "users", "v1hash", "name: users", "alice")
	require.NoError(t, err)
	assert.True(t, changed)
	changed, err = c.RegisterSpec(ctx, "users", "v1hash", "name: users", "alice")
	require.NoError(t, err)
	assert.False(t, changed, "registering the same version again changes nothing")
	changed, err = c.RegisterSpec(ctx, "users", "v2hash", "name: users # v2", "bob")
	require.NoError(t, err)
	assert.True(t, changed)

	m, err := c.Migration(ctx, "users")
	require.NoError(t, err)
	assert.Equal(t, "v2hash", m.SpecVersion)
	assert.Equal(t, catalog.PhaseOff, m.Phase)
	s, err := c.Spec(ctx, "users", "v1hash")
	require.NoError(t, err)
	assert.Equal(t, "name: users", s.Content)
	_, err = c.Spec(ctx, "users", "nope")
	assert.ErrorIs(t, err, catalog.ErrNotFound)

	require.NoError(t, c.SetPhase(ctx, "users", "off", "shadow", "carol", "start shadowing"))
	err = c.SetPhase(ctx, "users", "off", "dual", "dave", "stale view")
	assert.ErrorIs(t, err, catalog.ErrConflict, "a move from a phase the migration has left fails")
	assert.ErrorIs(t, c.SetPhase(ctx, "nobody", "off", "shadow", "x", "y"), catalog.ErrNotFound)

	audit, err := c.Audit(ctx, "users", 0)
	require.NoError(t, err)
	require.Len(t, audit, 3)
	assert.Equal(t, []string{"spec", "spec", "phase"}, []string{audit[0].Kind, audit[1].Kind, audit[2].Kind})
	assert.Equal(t, "v1hash", audit[1].From)
	assert.Equal(t, "v2hash", audit[1].To)
	assert.Equal(t, "bob", audit[1].Who)
	assert.Equal(t, "shadow", audit[2].To)
	assert.Equal(t, "carol", audit[2].Who)
	assert.Equal(t, "start shadowing", audit[2].Why)
	assert.False(t, audit[2].At.IsZero())
}

func TestRacingPhaseMovesHaveOneWinner(t *testing.T) {
	c, _ := open(t)
	ctx := context.Background()
	_, err := c.RegisterSpec(ctx, "orders", "v1", "x", "t")
	require.NoError(t, err)
	var wins, conflicts atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			err := c.SetPhase(ctx, "orders", "off", "shadow", fmt.Sprintf("proc-%d", i), "race")
			switch {
			case err == nil:
				wins.Add(1)
			case assert.ErrorIs(t, err, catalog.ErrConflict):
				conflicts.Add(1)
			}
		}(i)
	}
	wg.Wait()
	assert.Equal(t, int64(1), wins.Load())
	assert.Equal(t, int64(7), conflicts.Load())
	audit, err := c.Audit(ctx, "orders", 0)
	require.NoError(t, err)
	phases := 0
	for _, a := range audit {
		if a.Kind == "phase" {
			phases++
		}
	}
	assert.Equal(t, 1, phases, "only the winning move is audited")
}

func TestCheckpointsAndProgress(t *testing.T) {
	c, _ := open(t)
	ctx := context.Background()
	var pos string
	found, err := c.LoadCheckpoint(ctx, "users", "backfill/p0", &pos)
	require.NoError(t, err)
	assert.False(t, found)

	require.NoError(t, c.SaveCheckpoint(ctx, "users", "backfill/p0", "user-000100"))
	require.NoError(t, c.SaveCheckpoint(ctx, "users", "backfill/p0", "user-000200"))
	found, err = c.LoadCheckpoint(ctx, "users", "backfill/p0", &pos)
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, "user-000200", pos)

	type resume struct {
		Token bson.Raw `bson:"token"`
		N     int64    `bson:"n"`
	}
	tok, _ := bson.Marshal(bson.D{{Key: "_data", Value: "8263"}})
	require.NoError(t, c.SaveCheckpoint(ctx, "users", "cdc", resume{Token: tok, N: 7}))
	var got resume
	found, err = c.LoadCheckpoint(ctx, "users", "cdc", &got)
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, int64(7), got.N)
	assert.Equal(t, bson.Raw(tok), got.Token)

	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, c.AddProgress(ctx, "users", "backfill", map[string]int64{"copied": 10, "skipped": 1}))
		}()
	}
	wg.Wait()
	p, err := c.Progress(ctx, "users", "backfill")
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{"copied": 50, "skipped": 5}, p)
	p, err = c.Progress(ctx, "users", "never")
	require.NoError(t, err)
	assert.Empty(t, p)
}

func TestMismatchesAndReports(t *testing.T) {
	c, _ := open(t)
	ctx := context.Background()
	id, err := c.RecordMismatch(ctx, catalog.Mismatch{Migration: "users", Key: "u1", Source: "verify", Diff: []string{"age: 3 != 4"}})
	require.NoError(t, err)
	require.NoError(t, c.MarkRepaired(ctx, id))
	assert.ErrorIs(t, c.MarkRepaired(ctx, bson.NewObjectID()), catalog.ErrNotFound)
	ms, err := c.Mismatches(ctx, "users", 0)
	require.NoError(t, err)
	require.Len(t, ms, 1)
	assert.Equal(t, "u1", ms[0].Key)
	assert.NotNil(t, ms[0].RepairedAt)

	_, err = c.SaveReport(ctx, catalog.Report{Migration: "users", Kind: "validate", Content: "first"})
	require.NoError(t, err)
	_, err = c.SaveReport(ctx, catalog.Report{Migration: "users", Kind: "validate", Content: "second", At: time.Now().Add(time.Second)})
	require.NoError(t, err)
	rs, err := c.Reports(ctx, "users", "validate", 1)
	require.NoError(t, err)
	require.Len(t, rs, 1)
	assert.Equal(t, "second", rs[0].Content, "newest first")
}

func TestDeadLetters(t *testing.T) {
	c, _ := open(t)
	ctx := context.Background()
	dl := catalog.DeadLetter{Migration: "users", KeyString: `"u1"`, Key: "u1", Direction: "forward", Step: "forward[2] convert age", Reason: "not an int32", SpecVersion: "v1"}
	require.NoError(t, c.AddDeadLetter(ctx, dl))
	dl.Reason = "still not an int32"
	require.NoError(t, c.AddDeadLetter(ctx, dl))
	require.NoError(t, c.AddDeadLetter(ctx, catalog.DeadLetter{Migration: "users", KeyString: `"u2"`, Key: "u2", Direction: "forward", Step: "write", Reason: "x", SpecVersion: "v2"}))

	all, err := c.DeadLetters(ctx, "users", catalog.DeadLetterFilter{})
	require.NoError(t, err)
	require.Len(t, all, 2)
	assert.Equal(t, int64(2), all[0].Attempts)
	assert.Equal(t, "still not an int32", all[0].Reason)
	assert.True(t, !all[0].LastSeen.Before(all[0].FirstSeen))

	stale, err := c.DeadLetters(ctx, "users", catalog.DeadLetterFilter{NotSpecVersion: "v2"})
	require.NoError(t, err)
	require.Len(t, stale, 1)
	assert.Equal(t, "u1", stale[0].Key)

	require.NoError(t, c.ResolveDeadLetter(ctx, "users", "forward", `"u1"`))
	require.NoError(t, c.ResolveDeadLetter(ctx, "users", "forward", `"u1"`), "resolving twice is fine")
	n, err := c.CountDeadLetters(ctx, "users")
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
}

// TestInterruptedChangeIsCompleted: a process that claimed a change (wrote its audit entry) and
// died before applying it leaves the migration one revision behind; the next change completes
// the claimed one and reports a conflict, so the caller re-reads and decides again.
func TestInterruptedChangeIsCompleted(t *testing.T) {
	c, name := open(t)
	ctx := context.Background()
	_, err := c.RegisterSpec(ctx, "users", "v1", "x", "t")
	require.NoError(t, err)
	m, err := c.Migration(ctx, "users")
	require.NoError(t, err)
	_, err = client.Database(name).Collection("audit").InsertOne(ctx, catalog.AuditEntry{
		ID: fmt.Sprintf("users#%d", m.Revision+1), Migration: "users", Kind: "phase",
		From: "off", To: "shadow", Who: "crashed", Why: "died before applying", At: time.Now(), Revision: m.Revision + 1,
	})
	require.NoError(t, err)

	err = c.SetPhase(ctx, "users", "off", "dual", "me", "later")
	assert.ErrorIs(t, err, catalog.ErrConflict)
	m2, err := c.Migration(ctx, "users")
	require.NoError(t, err)
	assert.Equal(t, "shadow", m2.Phase, "the claimed change was completed")
	assert.Equal(t, m.Revision+1, m2.Revision)
	require.NoError(t, c.SetPhase(ctx, "users", "shadow", "dual", "me", "now"))
}

// TestReopenWritesNothing: opening a catalog that exists only reads it, so a process restarted
// next to busy ones cannot fail on a needless write (FerretDB's SQLite answered "database is
// locked" to a killed backfill's successor re-creating the indexes).
func TestReopenWritesNothing(t *testing.T) {
	ctx := context.Background()
	store, err := embedmongo.Start(ctx, embedmongo.Options{})
	require.NoError(t, err)
	t.Cleanup(store.Stop)
	var mu sync.Mutex
	var commands []string
	mon := &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		mu.Lock()
		commands = append(commands, e.CommandName)
		mu.Unlock()
	}}
	c, err := mongo.Connect(options.Client().ApplyURI(store.URI()).SetMonitor(mon))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(ctx) })

	_, err = catalog.Open(ctx, c, catalog.WithDatabase("reopen"))
	require.NoError(t, err)
	mu.Lock()
	first := slices.Clone(commands)
	commands = nil
	mu.Unlock()
	assert.Contains(t, first, "createIndexes", "the first open creates the indexes")
	assert.Contains(t, first, "update", "the first open records the schema version")

	_, err = catalog.Open(ctx, c, catalog.WithDatabase("reopen"))
	require.NoError(t, err)
	mu.Lock()
	defer mu.Unlock()
	assert.NotEmpty(t, commands)
	for _, name := range commands {
		assert.Contains(t, []string{"find", "listIndexes", "hello", "isMaster", "endSessions"}, name, "a reopen only reads")
	}
}
