package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/embedmongo"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/proxy"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/transform"
)

// flagSwitch is a test double of the flag source (the real one is flags.Evaluator over the
// catalog, tested in package flags and end to end in cmd/tandem): the test sets the values and
// every change bumps the generation, as a provider's change event does.
type flagSwitch struct {
	mu   sync.Mutex
	vals flags.Values
	seen []flags.Context
	gen  atomic.Uint64
}

func (f *flagSwitch) Evaluate(_ context.Context, c flags.Context) flags.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, c)
	return f.vals
}

func (f *flagSwitch) Generation() uint64 { return f.gen.Load() }

func (f *flagSwitch) set(v flags.Values) {
	f.mu.Lock()
	f.vals = v
	f.mu.Unlock()
	f.gen.Add(1)
}

func (f *flagSwitch) contexts() []flags.Context {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]flags.Context(nil), f.seen...)
}

// recordingJournal is a test double of shadow.Journal (the real one is Kafka, tested in
// adapters and cdc): it keeps what it is given.
type recordingJournal struct {
	mu      sync.Mutex
	entries []adapters.JournalEntry
}

func (j *recordingJournal) Append(_ context.Context, entries ...adapters.JournalEntry) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, entries...)
	return nil
}

func (j *recordingJournal) all() []adapters.JournalEntry {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]adapters.JournalEntry(nil), j.entries...)
}

const usersSpec = `
name: users-v2
source: {mongodb: {uri: "mongodb://127.0.0.1:1/", database: DB, collection: users}}
target: {mongodb: {uri: "mongodb://127.0.0.1:1/", database: DB, collection: users_v2}}
key: {source: _id, target: _id}
forward:
  - rename: {from: name, to: profile.full_name}
  - convert: {path: age, from: int32, to: int64}
  - set: {path: schema_version, value: 2}
`

// migrated is a proxy with one migration, db.users → db.users_v2, on the shared FerretDB.
type migrated struct {
	*running
	flags    *flagSwitch
	journal  *recordingJournal
	old, new *mongo.Collection
	cat      *catalog.Catalog
	engine   *shadow.Engine
	forward  shadow.Transform
	client   *mongo.Client // through the proxy
	users    *mongo.Collection
}

var dbSeq atomic.Int64

type migratedOptions struct {
	newStore adapters.Store // default: db.users_v2 on the shared FerretDB
	appName  string
	// readFromWorkingNew makes reads from new (read_source=new) use db.users_v2 on the shared
	// FerretDB even when newStore, which writes use, is down.
	readFromWorkingNew bool
}

func newMigrated(t *testing.T, v flags.Values, mo migratedOptions) *migrated {
	t.Helper()
	ctx := context.Background()
	direct := connect(t, ferret.URI())
	db := direct.Database(fmt.Sprintf("migrate_%d", dbSeq.Add(1)))
	t.Cleanup(func() {
		_ = db.Drop(context.Background())
		_ = direct.Database(db.Name() + "_meta").Drop(context.Background())
	})
	spec, err := transform.Parse("users.yaml", []byte(usersSpec))
	require.NoError(t, err)
	cat, err := catalog.Open(ctx, direct, catalog.WithDatabase(db.Name()+"_meta"))
	require.NoError(t, err)
	m := &migrated{flags: &flagSwitch{}, journal: &recordingJournal{}, old: db.Collection("users"), new: db.Collection("users_v2"), cat: cat}
	m.flags.set(v)
	newStore := mo.newStore
	if newStore == nil {
		newStore = adapters.NewMongoStore(m.new)
	}
	m.forward = spec.Forward
	m.engine, err = shadow.NewEngine(shadow.Config{
		Migration: "users-v2", SpecVersion: spec.Version, Old: adapters.NewMongoStore(m.old), New: newStore,
		Forward: spec.Forward, Reverse: spec.Reverse, DeadLetters: cat,
	})
	require.NoError(t, err)
	w, err := shadow.NewWriter(shadow.WriterConfig{Engine: m.engine, Journal: m.journal, Namespace: db.Name() + ".users", Timeout: 2 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.Close(context.Background()) })
	cmp, err := shadow.NewComparer(shadow.ComparerConfig{Engine: m.engine, Mismatches: cat})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cmp.Close(context.Background()) })
	var reader proxy.NewReader = m.engine
	if mo.readFromWorkingNew {
		reader, err = shadow.NewEngine(shadow.Config{
			Migration: "users-v2", SpecVersion: spec.Version, Old: adapters.NewMongoStore(m.old), New: adapters.NewMongoStore(m.new),
			Forward: spec.Forward, Reverse: spec.Reverse, DeadLetters: cat,
		})
		require.NoError(t, err)
	}
	routes, err := proxy.NewRoutes(m.flags, "tenant-a", &proxy.Migration{
		Name: "users-v2", Database: db.Name(), Collection: "users",
		Writer: w, Reader: cmp, New: reader, PreRead: proxy.MongoPreRead(m.old), Timeout: 2 * time.Second,
	})
	require.NoError(t, err)
	m.running = serveProxy(t, ferret.URI(), proxy.WithRoutes(routes))
	copts := options.Client()
	if mo.appName != "" {
		copts.SetAppName(mo.appName)
	}
	m.client = connect(t, m.uri, copts)
	m.users = m.client.Database(db.Name()).Collection("users")
	return m
}

func userDoc(id, name string, age int32) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "name", Value: name}, {Key: "age", Value: age}}
}

// expectConverged checks that new holds exactly transform(old) for every key (nothing for a
// key old lacks).
func (m *migrated) expectConverged(t *testing.T, keys ...string) {
	t.Helper()
	for _, k := range keys {
		assert.NoError(t, m.diff(k), "key %s", k)
	}
}

func (m *migrated) diff(k string) error {
	ctx := context.Background()
	var oldDoc, newDoc bson.D
	oerr := m.old.FindOne(ctx, bson.D{{Key: "_id", Value: k}}).Decode(&oldDoc)
	nerr := m.new.FindOne(ctx, bson.D{{Key: "_id", Value: k}}).Decode(&newDoc)
	switch {
	case errors.Is(oerr, mongo.ErrNoDocuments) && errors.Is(nerr, mongo.ErrNoDocuments):
		return nil
	case oerr != nil && !errors.Is(oerr, mongo.ErrNoDocuments):
		return oerr
	case nerr != nil && !errors.Is(nerr, mongo.ErrNoDocuments):
		return nerr
	case errors.Is(oerr, mongo.ErrNoDocuments):
		return fmt.Errorf("new has %v, old has nothing", newDoc)
	case errors.Is(nerr, mongo.ErrNoDocuments):
		return fmt.Errorf("old has %v, new has nothing", oldDoc)
	}
	want, err := m.forward(oldDoc)
	if err != nil {
		return err
	}
	if d := transform.Diff(want, newDoc); len(d) > 0 {
		return fmt.Errorf("new differs from transform(old): %v", d)
	}
	return nil
}

func (m *migrated) eventuallyConverged(t *testing.T, keys ...string) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, k := range keys {
			if m.diff(k) != nil {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond)
	m.expectConverged(t, keys...)
}

// writeWorkload runs every kind of write the proxy must understand.
func writeWorkload(t *testing.T, users *mongo.Collection) {
	t.Helper()
	ctx := context.Background()
	_, err := users.InsertOne(ctx, userDoc("u1", "Ada", 36))
	require.NoError(t, err)
	_, err = users.InsertMany(ctx, []any{userDoc("u2", "Bob", 40), userDoc("u3", "Cy", 22), userDoc("u4", "Di", 51)})
	require.NoError(t, err)
	_, err = users.UpdateOne(ctx, bson.D{{Key: "_id", Value: "u1"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: "Ada L"}}}})
	require.NoError(t, err)
	// An upsert whose filter names no _id: the key comes from the reply.
	res, err := users.UpdateOne(ctx, bson.D{{Key: "name", Value: "Eve"}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "age", Value: int32(29)}}}, {Key: "$setOnInsert", Value: bson.D{{Key: "_id", Value: "u5"}}}},
		options.UpdateOne().SetUpsert(true))
	require.NoError(t, err)
	require.Equal(t, "u5", res.UpsertedID)
	_, err = users.DeleteOne(ctx, bson.D{{Key: "_id", Value: "u3"}})
	require.NoError(t, err)
	// findAndModify with a filter on another field: the key comes from the returned value.
	require.NoError(t, users.FindOneAndUpdate(ctx, bson.D{{Key: "name", Value: "Bob"}},
		bson.D{{Key: "$inc", Value: bson.D{{Key: "age", Value: int32(1)}}}}).Err())
	// A bulk write: sent as document sequences.
	_, err = users.BulkWrite(ctx, []mongo.WriteModel{
		mongo.NewInsertOneModel().SetDocument(userDoc("u6", "Fay", 33)),
		mongo.NewReplaceOneModel().SetFilter(bson.D{{Key: "_id", Value: "u4"}}).SetReplacement(bson.D{{Key: "name", Value: "Dee"}, {Key: "age", Value: int32(52)}}),
		mongo.NewDeleteOneModel().SetFilter(bson.D{{Key: "_id", Value: "u6"}}),
	})
	require.NoError(t, err)
}

var workloadKeys = []string{"u1", "u2", "u3", "u4", "u5", "u6"}

func TestShadowPhaseConvergesWrites(t *testing.T) {
	m := newMigrated(t, flags.Values{Phase: flags.PhaseShadow, ReadSource: flags.ReadOld}, migratedOptions{})
	writeWorkload(t, m.users)
	m.eventuallyConverged(t, workloadKeys...)

	// An update with a filter on another field names no keys: in shadow it is journaled for
	// the change-stream path, not read ahead.
	_, err := m.users.UpdateMany(context.Background(), bson.D{{Key: "age", Value: bson.D{{Key: "$gt", Value: 30}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "vip", Value: true}}}})
	require.NoError(t, err)
	var unkeyed []string
	for _, e := range m.journal.all() {
		if e.Reason == shadow.ReasonUnkeyedWrite {
			assert.Equal(t, "users-v2", e.Migration)
			assert.Nil(t, e.Key)
			unkeyed = append(unkeyed, e.Op+" "+e.Filter.String())
		}
	}
	// The upsert and the findAndModify of the workload filter on name: their keys came from
	// the replies, and they are journaled too, in case a reply was lost.
	assert.Equal(t, []string{`update {"name": "Eve"}`, `findAndModify {"name": "Bob"}`, `update {"age": {"$gt": {"$numberInt":"30"}}}`}, unkeyed)
	assert.Positive(t, metric(t, m.registry, "tandem_proxy_migration_requests_total", "action", "unkeyed"))
}

func TestOffPhaseLeavesNewAlone(t *testing.T) {
	m := newMigrated(t, flags.Defaults(), migratedOptions{})
	writeWorkload(t, m.users)
	time.Sleep(200 * time.Millisecond) // an async converge, if one were wrongly started, would land by now
	n, err := m.new.CountDocuments(context.Background(), bson.D{})
	require.NoError(t, err)
	assert.Zero(t, n, "phase off writes nothing to new")
	assert.Empty(t, m.journal.all())
}

func TestDualPhaseConvergesBeforeTheReply(t *testing.T) {
	m := newMigrated(t, flags.Values{Phase: flags.PhaseDual, ReadSource: flags.ReadOld}, migratedOptions{})
	ctx := context.Background()
	_, err := m.users.InsertOne(ctx, userDoc("d1", "Ann", 30))
	require.NoError(t, err)
	m.expectConverged(t, "d1") // no waiting: the reply came after the converge
	_, err = m.users.InsertMany(ctx, []any{userDoc("d2", "Ben", 31), userDoc("d3", "Cat", 32), userDoc("d4", "Dan", 60)})
	require.NoError(t, err)
	// A multi-document update with another filter: its keys are read before the write.
	_, err = m.users.UpdateMany(ctx, bson.D{{Key: "age", Value: bson.D{{Key: "$lt", Value: 40}}}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: "young"}}}})
	require.NoError(t, err)
	m.expectConverged(t, "d1", "d2", "d3", "d4")
	raw, err := m.new.FindOne(ctx, bson.D{{Key: "_id", Value: "d2"}}).Raw()
	require.NoError(t, err)
	assert.Equal(t, "young", raw.Lookup("profile", "full_name").StringValue())
	_, err = m.users.DeleteMany(ctx, bson.D{{Key: "age", Value: bson.D{{Key: "$gte", Value: 60}}}})
	require.NoError(t, err)
	m.expectConverged(t, "d4")
	assert.Equal(t, float64(2), metric(t, m.registry, "tandem_proxy_migration_requests_total", "action", "pre_read"))
	writeWorkload(t, m.users)
	m.expectConverged(t, workloadKeys...)
}

// downStore returns a store on a FerretDB that has been stopped: every operation fails.
func downStore(t *testing.T) adapters.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := embedmongo.Start(ctx, embedmongo.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	srv.Stop()
	c, err := mongo.Connect(options.Client().ApplyURI(srv.URI()).SetServerSelectionTimeout(300 * time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	return adapters.NewMongoStore(c.Database("down").Collection("users_v2"))
}

func TestNewStoreDownNeverFailsShadowOrDualWrites(t *testing.T) {
	for _, phase := range []string{flags.PhaseShadow, flags.PhaseDual} {
		t.Run(phase, func(t *testing.T) {
			m := newMigrated(t, flags.Values{Phase: phase, ReadSource: flags.ReadOld}, migratedOptions{newStore: downStore(t)})
			ctx := context.Background()
			for i := range 5 {
				_, err := m.users.InsertOne(ctx, userDoc(fmt.Sprintf("k%d", i), "X", 20))
				require.NoError(t, err, "the client's write must succeed while the new store is down")
			}
			n, err := m.old.CountDocuments(ctx, bson.D{})
			require.NoError(t, err)
			assert.Equal(t, int64(5), n)
			require.Eventually(t, func() bool {
				got := map[string]bool{}
				for _, e := range m.journal.all() {
					if e.Key != nil {
						got[adapters.KeyString(e.Key)] = true
					}
				}
				return len(got) == 5
			}, 15*time.Second, 50*time.Millisecond, "every key waits in the journal")
		})
	}
}

func TestCutoverReportsAFailedConvergeAsAWriteConcernError(t *testing.T) {
	m := newMigrated(t, flags.Values{Phase: flags.PhaseCutover, ReadSource: flags.ReadNew}, migratedOptions{newStore: downStore(t)})
	_, err := m.users.InsertOne(context.Background(), userDoc("c1", "X", 20))
	var we mongo.WriteException
	require.ErrorAs(t, err, &we)
	require.NotNil(t, we.WriteConcernError)
	assert.Equal(t, 64, we.WriteConcernError.Code)
	assert.Contains(t, we.WriteConcernError.Message, "in the old store but not yet in the new one")
	assert.Empty(t, we.WriteErrors)
	n, err := m.old.CountDocuments(context.Background(), bson.D{{Key: "_id", Value: "c1"}})
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the write itself is in the old store")
}

// TestLookupsOfUnconvergedKeysGoToOld: after a key's converge failed in cutover, a look-up of
// that key is served from old (which has the write) rather than from new (which lacks it).
func TestLookupsOfUnconvergedKeysGoToOld(t *testing.T) {
	m := newMigrated(t, flags.Values{Phase: flags.PhaseCutover, ReadSource: flags.ReadNew},
		migratedOptions{newStore: downStore(t), readFromWorkingNew: true})
	ctx := context.Background()
	_, err := m.users.InsertOne(ctx, userDoc("c2", "Ann", 20))
	var we mongo.WriteException
	require.ErrorAs(t, err, &we, "the converge failed: a writeConcernError")
	var got bson.M
	require.NoError(t, m.users.FindOne(ctx, bson.D{{Key: "_id", Value: "c2"}}).Decode(&got), "served from old")
	assert.Equal(t, "Ann", got["name"])
	assert.Equal(t, float64(1), metric(t, m.registry, "tandem_proxy_migration_requests_total", "action", "read_fallback"))
	// A key that never failed is still served from new (where it is absent).
	_, err = m.old.InsertOne(ctx, userDoc("c3", "Ben", 21))
	require.NoError(t, err)
	require.ErrorIs(t, m.users.FindOne(ctx, bson.D{{Key: "_id", Value: "c3"}}).Err(), mongo.ErrNoDocuments, "served from new")
	assert.Equal(t, float64(1), metric(t, m.registry, "tandem_proxy_migration_requests_total", "action", "read_new"))
}

func TestWriteBlockFailsWritesRetryably(t *testing.T) {
	m := newMigrated(t, flags.Values{Phase: flags.PhaseDual, ReadSource: flags.ReadOld, WriteBlock: true}, migratedOptions{})
	ctx := context.Background()
	_, err := m.users.InsertOne(ctx, userDoc("b1", "X", 20))
	var se mongo.ServerError
	require.ErrorAs(t, err, &se)
	assert.True(t, se.HasErrorCode(10107), "NotWritablePrimary: %v", err)
	assert.True(t, se.HasErrorLabel("RetryableWriteError"), "drivers retry it: %v", err)
	n, err := m.old.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	assert.Zero(t, n, "a blocked write never reaches old")
	// Reads go on.
	require.ErrorIs(t, m.users.FindOne(ctx, bson.D{{Key: "_id", Value: "b1"}}).Err(), mongo.ErrNoDocuments)

	// The driver retried it once (RetryableWriteError), and got the same answer.
	assert.Equal(t, float64(2), metric(t, m.registry, "tandem_proxy_migration_requests_total", "action", "write_blocked"))

	// Lifting the block lets writes through again, at once.
	m.flags.set(flags.Values{Phase: flags.PhaseCutover, ReadSource: flags.ReadNew})
	_, err = m.users.InsertOne(ctx, userDoc("b2", "Y", 21))
	require.NoError(t, err)
	m.expectConverged(t, "b2")
}

func TestReadSourceNewServesKeyLookupsFromNew(t *testing.T) {
	m := newMigrated(t, flags.Values{Phase: flags.PhaseCutover, ReadSource: flags.ReadNew}, migratedOptions{})
	ctx := context.Background()
	_, err := m.users.InsertMany(ctx, []any{userDoc("r1", "Ann", 30), userDoc("r2", "Ben", 40), userDoc("r3", "Cat", 50)})
	require.NoError(t, err)
	m.expectConverged(t, "r1", "r2", "r3")
	// Change r1 in new only, so the test can tell which store answered.
	_, err = m.new.UpdateOne(ctx, bson.D{{Key: "_id", Value: "r1"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "profile.full_name", Value: "from new"}}}})
	require.NoError(t, err)

	var got bson.M
	require.NoError(t, m.users.FindOne(ctx, bson.D{{Key: "_id", Value: "r1"}}).Decode(&got))
	assert.Equal(t, bson.M{"_id": "r1", "name": "from new", "age": int32(30)}, got, "served from new, in the old shape")
	cur, err := m.users.Find(ctx, bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: bson.A{"r1", "r2", "missing"}}}}})
	require.NoError(t, err)
	var docs []bson.M
	require.NoError(t, cur.All(ctx, &docs))
	require.Len(t, docs, 2)
	assert.Equal(t, float64(2), metric(t, m.registry, "tandem_proxy_migration_requests_total", "action", "read_new"))

	// Any other query stays on old.
	require.NoError(t, m.users.FindOne(ctx, bson.D{{Key: "name", Value: "Ann"}}).Decode(&got))
	assert.Equal(t, "Ann", got["name"])
	require.ErrorIs(t, m.users.FindOne(ctx, bson.D{{Key: "_id", Value: "nope"}}).Err(), mongo.ErrNoDocuments)

	// read_source=old: the same look-up goes to old again.
	m.flags.set(flags.Values{Phase: flags.PhaseCutover, ReadSource: flags.ReadOld})
	require.NoError(t, m.users.FindOne(ctx, bson.D{{Key: "_id", Value: "r1"}}).Decode(&got))
	assert.Equal(t, "Ann", got["name"])
}

func TestShadowReadsRecordAndRepairMismatches(t *testing.T) {
	m := newMigrated(t, flags.Values{Phase: flags.PhaseDual, ReadSource: flags.ReadOld, ShadowReadPercent: 100}, migratedOptions{})
	ctx := context.Background()
	_, err := m.users.InsertMany(ctx, []any{userDoc("s1", "Ann", 30), userDoc("s2", "Ben", 40)})
	require.NoError(t, err)
	_, err = m.new.UpdateOne(ctx, bson.D{{Key: "_id", Value: "s2"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "age", Value: int64(99)}}}})
	require.NoError(t, err)

	cur, err := m.users.Find(ctx, bson.D{})
	require.NoError(t, err)
	var docs []bson.M
	require.NoError(t, cur.All(ctx, &docs))
	require.Len(t, docs, 2, "the client's reply is the old store's")
	assert.EqualValues(t, 40, docs[1]["age"])

	require.Eventually(t, func() bool {
		ms, err := m.cat.Mismatches(ctx, "users-v2", 0)
		return err == nil && len(ms) == 1 && ms[0].RepairedAt != nil
	}, 10*time.Second, 20*time.Millisecond)
	ms, err := m.cat.Mismatches(ctx, "users-v2", 0)
	require.NoError(t, err)
	assert.Equal(t, "s2", ms[0].Key)
	assert.Equal(t, "shadow-read", ms[0].Source)
	assert.NotEmpty(t, ms[0].Diff)
	m.expectConverged(t, "s1", "s2")
	assert.Equal(t, float64(1), metric(t, m.registry, "tandem_proxy_migration_requests_total", "action", "shadow_read"))
}

func TestFlagsAreEvaluatedWithTheHandshakeContext(t *testing.T) {
	m := newMigrated(t, flags.Values{Phase: flags.PhaseShadow, ReadSource: flags.ReadOld}, migratedOptions{appName: "billing"})
	_, err := m.users.InsertOne(context.Background(), userDoc("a1", "X", 1))
	require.NoError(t, err)
	seen := m.flags.contexts()
	require.NotEmpty(t, seen)
	c := seen[len(seen)-1]
	assert.Equal(t, flags.Context{Migration: "users-v2", Database: m.old.Database().Name(), Collection: "users", App: "billing", Tenant: "tenant-a"}, c)

	// Evaluated once per flag change, not per request.
	before := len(m.flags.contexts())
	for i := range 5 {
		_, err := m.users.InsertOne(context.Background(), userDoc(fmt.Sprintf("a%d", i+2), "X", 1))
		require.NoError(t, err)
	}
	assert.Equal(t, before, len(m.flags.contexts()))
}

func TestRoutesRejectBadMigrations(t *testing.T) {
	fs := &flagSwitch{}
	w := &shadow.Writer{}
	tests := []struct {
		ms   []*proxy.Migration
		want string
	}{
		{[]*proxy.Migration{{Database: "d", Collection: "c", Writer: w}}, "has no name"},
		{[]*proxy.Migration{{Name: "m", Collection: "c", Writer: w}}, "database and collection are required"},
		{[]*proxy.Migration{{Name: "m", Database: "d", Collection: "c"}}, "shadow writer is required"},
		{[]*proxy.Migration{{Name: "a", Database: "d", Collection: "c", Writer: w}, {Name: "b", Database: "d", Collection: "c", Writer: w}}, "both claim d.c"},
	}
	for _, tt := range tests {
		_, err := proxy.NewRoutes(fs, "", tt.ms...)
		assert.ErrorContains(t, err, tt.want)
	}
	_, err := proxy.NewRoutes(nil, "")
	assert.ErrorContains(t, err, "flag source")
}
