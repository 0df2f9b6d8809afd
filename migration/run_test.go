package migration_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-feature/go-sdk/openfeature"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/examples"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/migration"
	"github.com/tandemdb/tandem/transform"
)

const name = "users-v2" // the migration examples.UsersV2 names

var dbSeq atomic.Int64

// fixture is a runner of the users-v2 migration on the embedded FerretDB: its catalog, flags
// (the catalog-backed provider, polled every 20ms) and an in-process Kafka journal (kfake).
type fixture struct {
	cat      *catalog.Catalog
	manager  *flags.Manager
	eval     *flags.Evaluator
	journal  *adapters.KafkaJournal
	old, new *mongo.Collection
	cfg      migration.Config
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	db := fmt.Sprintf("tandem_migration_test_%d", dbSeq.Add(1))
	t.Cleanup(func() {
		_ = client.Database(db).Drop(ctx)
		_ = client.Database(db + "_meta").Drop(ctx)
	})
	cat, err := catalog.Open(ctx, client, catalog.WithDatabase(db+"_meta"))
	require.NoError(t, err)
	spec, err := transform.Parse("users-v2.yaml", examples.UsersV2)
	require.NoError(t, err)
	spec.Source.Database, spec.Target.Database = db, db
	_, err = cat.RegisterSpec(ctx, spec.Name, spec.Version, spec.Redacted(), "migration test")
	require.NoError(t, err)

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "tandem.journal"))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	journal, err := adapters.NewKafkaJournal(adapters.KafkaJournalConfig{Brokers: cluster.ListenAddrs(), Topic: "tandem.journal"})
	require.NoError(t, err)
	t.Cleanup(journal.Close)

	p, err := flags.NewProvider(cat, flags.WithPollInterval(20*time.Millisecond))
	require.NoError(t, err)
	domain := t.Name()
	regCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cl, err := flags.Register(regCtx, domain, p)
	require.NoError(t, err)
	t.Cleanup(func() { _ = openfeature.SetNamedProviderAndWait(domain, openfeature.NoopProvider{}) })
	eval := flags.NewEvaluator(cl)
	t.Cleanup(eval.Close)

	f := &fixture{cat: cat, manager: flags.NewManager(cat), eval: eval, journal: journal,
		old: client.Database(db).Collection("users"), new: client.Database(db).Collection("users_v2")}
	f.cfg = migration.Config{
		Spec: spec, Old: f.old, New: adapters.NewMongoStore(f.new, adapters.MongoKeyField(spec.Key.Target)),
		Catalog: cat, Journal: journal, Flags: eval, Manager: f.manager, Watchdog: &flags.WatchdogConfig{},
		PolicyCheck: 10 * time.Millisecond, Backoff: migration.Backoff{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond},
	}
	return f
}

func (f *fixture) runner(t *testing.T) *migration.Runner {
	t.Helper()
	r, err := migration.New(f.cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	return r
}

// run starts r.Run and returns a function that stops it and returns Run's error.
func run(t *testing.T, r *migration.Runner) func() error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- r.Run(context.Background()) }()
	require.Eventually(t, func() bool { return r.Status().Running }, 5*time.Second, time.Millisecond)
	return func() error {
		r.Stop()
		select {
		case err := <-errc:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("Run did not return after Stop")
		}
	}
}

func pathStatus(r *migration.Runner, path string) migration.PathStatus {
	for _, p := range r.Status().Paths {
		if p.Name == path {
			return p
		}
	}
	return migration.PathStatus{}
}

// expectPaths waits until every named path is in its state, and each is wanted exactly when
// it should run.
func expectPaths(t *testing.T, r *migration.Runner, phase string, want map[string]migration.PathState) {
	t.Helper()
	require.Eventually(t, func() bool {
		if r.Status().Policy.Phase != phase {
			return false
		}
		for path, state := range want {
			if pathStatus(r, path).State != state {
				return false
			}
		}
		return true
	}, 10*time.Second, 5*time.Millisecond, "phase %s: want %v, have %+v", phase, want, r.Status())
	for path, state := range want {
		assert.Equal(t, state == migration.StateRunning, pathStatus(r, path).Wanted, "phase %s: %s wanted", phase, path)
	}
}

// TestRunnerStartsAndStopsPathsByPhase moves the migration through its phases with the flags
// manager on the real catalog: the runner starts exactly the paths each phase's policy runs,
// keeps a path that stays wanted running across a phase change, retries a failing one, and
// stops everything on rollback and on Stop.
func TestRunnerStartsAndStopsPathsByPhase(t *testing.T) {
	f := newFixture(t)
	r := f.runner(t)
	backfill := newFakePath(string(flags.PathBackfill), 0)
	forward := newFakePath(string(flags.PathForwardCDC), 2)
	reverse := newFakePath(string(flags.PathReverseCDC), 0)
	syncOnly := newFakePath("sync-only", 0)
	require.NoError(t, r.AddPath(backfill, nil))
	require.NoError(t, r.AddPath(forward, nil))
	require.NoError(t, r.AddPath(reverse, nil))
	require.NoError(t, r.AddPath(syncOnly, func(p flags.Policy) bool { return p.WriteConverge == flags.ConvergeSync }))
	assert.ErrorIs(t, r.AddPath(newFakePath("backfill", 0), nil), migration.ErrDuplicatePath)

	stop := run(t, r)
	assert.ErrorIs(t, r.Run(context.Background()), migration.ErrRunning)
	const (
		on  = migration.StateRunning
		off = migration.StateStopped
	)
	ctx := context.Background()
	expectPaths(t, r, flags.PhaseOff, map[string]migration.PathState{
		"watchdog": off, "backfill": off, "forward-cdc": off, "reverse-cdc": off, "sync-only": off})
	st := r.Status()
	assert.Equal(t, flags.ConvergeNone, st.Policy.WriteConverge)
	assert.Equal(t, f.cfg.Spec.Version, st.SpecVersion)
	assert.Equal(t, f.cfg.Spec.Source.Database+".users", st.Namespace)

	_, err := f.manager.Advance(ctx, name, flags.PhaseShadow, "test", "shadow")
	require.NoError(t, err)
	expectPaths(t, r, flags.PhaseShadow, map[string]migration.PathState{
		"watchdog": off, "backfill": on, "forward-cdc": on, "reverse-cdc": off, "sync-only": off})
	fs := pathStatus(r, "forward-cdc")
	assert.Equal(t, 2, fs.Restarts, "forward-cdc failed twice before it ran")
	assert.Equal(t, "forward-cdc: failure 2", fs.LastError)

	_, err = f.manager.Advance(ctx, name, flags.PhaseDual, "test", "dual")
	require.NoError(t, err)
	expectPaths(t, r, flags.PhaseDual, map[string]migration.PathState{
		"watchdog": on, "backfill": on, "forward-cdc": on, "reverse-cdc": off, "sync-only": on})
	assert.Equal(t, int32(1), backfill.runs.Load(), "a path wanted in both phases keeps running")
	assert.Equal(t, flags.FailureOldReply, r.Status().Policy.OnConvergeFailure)

	// The cutover gates: a clean verification (both stores are empty), a fresh lag report.
	sum, err := r.Verify(ctx, false)
	require.NoError(t, err)
	require.True(t, sum.Clean)
	require.NoError(t, f.cat.ReportLag(ctx, name, cdc.ComponentJournal, 0))
	_, gates, err := f.manager.Cutover(ctx, name, "test", "cutover")
	require.NoError(t, err, "gates: %+v", gates)
	expectPaths(t, r, flags.PhaseCutover, map[string]migration.PathState{
		"watchdog": on, "backfill": off, "forward-cdc": on, "reverse-cdc": on, "sync-only": on})
	assert.Equal(t, int32(0), backfill.running.Load(), "a stopped path's Run has returned")
	assert.True(t, r.Status().Policy.ReadsFromNew)

	_, err = f.manager.Rollback(ctx, name, flags.PhaseOff, "test", "all the way back")
	require.NoError(t, err)
	expectPaths(t, r, flags.PhaseOff, map[string]migration.PathState{
		"watchdog": off, "backfill": off, "forward-cdc": off, "reverse-cdc": off, "sync-only": off})

	_, err = f.manager.Advance(ctx, name, flags.PhaseShadow, "test", "shadow again")
	require.NoError(t, err)
	expectPaths(t, r, flags.PhaseShadow, map[string]migration.PathState{"backfill": on, "forward-cdc": on})
	assert.Equal(t, int32(2), backfill.runs.Load(), "started again in the next phase that wants it")

	require.NoError(t, stop())
	assert.False(t, r.Status().Running)
	for _, p := range []*fakePath{backfill, forward, reverse, syncOnly} {
		assert.Equal(t, int32(0), p.running.Load(), "%s stopped with Run", p.name)
		assert.Equal(t, migration.StateStopped, pathStatus(r, p.name).State)
	}
	require.NoError(t, r.Close(ctx))
	assert.ErrorIs(t, r.Run(ctx), migration.ErrClosed)
}

// TestRunnerVerifyRepairs: a repairing verification converges what the new store lacks, and
// the next one is clean.
func TestRunnerVerifyRepairs(t *testing.T) {
	f := newFixture(t)
	r := f.runner(t)
	ctx := context.Background()
	for i := range 3 {
		_, err := f.old.InsertOne(ctx, bson.D{{Key: "_id", Value: fmt.Sprintf("u%d", i)}, {Key: "name", Value: "Ann Lee"},
			{Key: "email", Value: "ann@example.com"}, {Key: "age", Value: int32(30)}, {Key: "created", Value: time.Now().UTC()}})
		require.NoError(t, err)
	}
	sum, err := r.Verify(ctx, true)
	require.NoError(t, err)
	assert.False(t, sum.Clean)
	assert.Equal(t, int64(3), sum.Repaired)
	sum, err = r.Verify(ctx, false)
	require.NoError(t, err)
	assert.True(t, sum.Clean, "%+v", sum)
	n, err := f.new.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.Equal(t, int64(3), n)
}

// TestJournalWorkerConvergesForItsRunners runs the process-wide journal worker under a
// supervisor: a keyed and an unkeyed entry converge through the runner's engine, and the
// runner's status lists the worker as shared.
func TestJournalWorkerConvergesForItsRunners(t *testing.T) {
	f := newFixture(t)
	r := f.runner(t)
	ctx := context.Background()
	p, err := migration.NewJournalWorker(migration.JournalConfig{Journal: f.journal, LagReporter: f.cat}, r)
	require.NoError(t, err)
	sup := migration.NewSupervisor(p, migration.Backoff{}, nil)
	r.Share(sup)
	sup.Start(ctx)
	t.Cleanup(sup.Stop)

	doc := func(id string, age int32) bson.D {
		return bson.D{{Key: "_id", Value: id}, {Key: "name", Value: "Bo Chan"}, {Key: "email", Value: "bo@example.com"},
			{Key: "age", Value: age}, {Key: "created", Value: time.Now().UTC()}}
	}
	_, err = f.old.InsertMany(ctx, []any{doc("k1", 20), doc("k2", 70), doc("k3", 71)})
	require.NoError(t, err)
	filter, err := bson.Marshal(bson.D{{Key: "age", Value: bson.D{{Key: "$gte", Value: 70}}}})
	require.NoError(t, err)
	ns := f.cfg.Spec.Source.Database + ".users"
	require.NoError(t, f.journal.Append(ctx,
		adapters.JournalEntry{Migration: name, Key: "k1", Namespace: ns, Op: "insert", Reason: "test", At: time.Now()},
		adapters.JournalEntry{Migration: name, Namespace: ns, Op: "update", Filter: filter, Reason: "test", At: time.Now()}))
	require.Eventually(t, func() bool {
		n, err := f.new.CountDocuments(ctx, bson.D{})
		return err == nil && n == 3
	}, 30*time.Second, 20*time.Millisecond, "the keyed entry and the two keys of the unkeyed one converge")

	js := pathStatus(r, migration.PathJournal)
	assert.True(t, js.Shared)
	assert.True(t, js.Wanted)
	assert.Equal(t, migration.StateRunning, js.State)
}

// TestNewChecksItsConfig: a missing required field, or a watchdog setting out of range, is
// ErrInvalidConfig.
func TestNewChecksItsConfig(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		change func(*migration.Config)
	}{
		{"no spec", func(c *migration.Config) { c.Spec = nil }},
		{"no old", func(c *migration.Config) { c.Old = nil }},
		{"no journal", func(c *migration.Config) { c.Journal = nil }},
		{"no flags", func(c *migration.Config) { c.Flags = nil }},
		{"watchdog without manager", func(c *migration.Config) { c.Manager = nil }},
		{"watchdog window too short", func(c *migration.Config) { c.Watchdog = &flags.WatchdogConfig{Window: time.Millisecond} }},
		{"source not keyed by _id", func(c *migration.Config) { s := *c.Spec; s.Key.Source = "email"; c.Spec = &s }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.cfg
			tt.change(&cfg)
			_, err := migration.New(cfg)
			assert.ErrorIs(t, err, migration.ErrInvalidConfig)
		})
	}
}

// TestRetryDeadLetters: dead letters of an older spec version converge again with the
// runner's; the current version's only when asked for all; reverse ones only from cutover on;
// and the dead-letter-retry path does it by itself when the runner starts.
func TestRetryDeadLetters(t *testing.T) {
	f := newFixture(t)
	r := f.runner(t)
	ctx := context.Background()
	user := func(id string) bson.D {
		return bson.D{{Key: "_id", Value: id}, {Key: "name", Value: "Ann Lee"}, {Key: "email", Value: "ann@example.com"},
			{Key: "age", Value: int32(30)}, {Key: "created", Value: time.Now().UTC().Truncate(time.Millisecond)}}
	}
	dead := func(id, direction, version string) {
		t.Helper()
		_, err := f.old.InsertOne(ctx, user(id))
		require.NoError(t, err)
		require.NoError(t, f.cat.AddDeadLetter(ctx, catalog.DeadLetter{Migration: name, KeyString: adapters.KeyString(id), Key: id,
			Direction: direction, Step: "forward[1] convert age", Reason: "not a number", SpecVersion: version, Attempts: 1}))
	}
	left := func() map[string]string {
		t.Helper()
		dls, err := f.cat.DeadLetters(ctx, name, catalog.DeadLetterFilter{})
		require.NoError(t, err)
		out := map[string]string{}
		for _, d := range dls {
			out[d.Direction+" "+d.KeyString] = d.SpecVersion
		}
		return out
	}
	version := f.cfg.Spec.Version
	dead("old-fwd", catalog.DirectionForward, "an-older-version")
	dead("cur-fwd", catalog.DirectionForward, version)
	dead("old-rev", catalog.DirectionReverse, "an-older-version")

	res, err := r.RetryDeadLetters(ctx, false, flags.PhaseShadow)
	require.NoError(t, err)
	assert.Equal(t, migration.DeadLetterRetry{Retried: 1, Resolved: 1, SkippedReverse: 1, SpecVersion: version}, res)
	assert.Equal(t, map[string]string{"forward " + adapters.KeyString("cur-fwd"): version, "reverse " + adapters.KeyString("old-rev"): "an-older-version"}, left())
	n, err := f.new.CountDocuments(ctx, bson.D{{Key: "_id", Value: "old-fwd"}})
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the older version's dead letter converged into the new store")

	res, err = r.RetryDeadLetters(ctx, true, flags.PhaseShadow)
	require.NoError(t, err)
	assert.Equal(t, migration.DeadLetterRetry{Retried: 1, Resolved: 1, SkippedReverse: 1, SpecVersion: version}, res, "all: the current version's too")
	assert.Equal(t, map[string]string{"reverse " + adapters.KeyString("old-rev"): "an-older-version"}, left())

	// From cutover on, the reverse one converges back into the old store.
	_, err = f.new.InsertOne(ctx, bson.D{{Key: "_id", Value: "old-rev"}, {Key: "schema_version", Value: int32(2)}})
	require.NoError(t, err)
	res, err = r.RetryDeadLetters(ctx, false, flags.PhaseCutover)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Retried)
	assert.Equal(t, 0, res.SkippedReverse)
	assert.Empty(t, left(), "resolved or recorded again under the current version: %+v", res)

	// The path retries by itself once the runner runs in a converging phase, and is done.
	dead("later", catalog.DirectionForward, "an-older-version")
	require.NoError(t, r.AddDeadLetterRetryPath())
	stop := run(t, r)
	defer func() { require.NoError(t, stop()) }()
	_, err = f.manager.Advance(ctx, name, flags.PhaseShadow, "test", "shadow")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return pathStatus(r, migration.PathDeadLetterRetry).State == migration.StateDone }, 10*time.Second, 10*time.Millisecond)
	assert.Empty(t, left())
}
