package shadow_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
)

var client *mongo.Client

func TestMain(m *testing.M) { testenv.MongoMain(m, &client) }

// specYAML is a reversible users migration; onError is the convert policy for age.
func specYAML(onError string) string {
	return `name: users-test
source:
  mongodb: {uri: "mongodb://unused/", database: d, collection: users}
target:
  mongodb: {uri: "mongodb://unused/", database: d, collection: users_v2}
forward:
  - rename: {from: name, to: profile.name}
  - convert: {path: age, from: int32, to: int64, on_error: ` + onError + `}
  - set: {path: v, value: 2}
reverse:
  - drop: {path: v}
  - convert: {path: age, from: int64, to: int32, on_error: keep}
  - rename: {from: profile.name, to: name}
`
}

type fixture struct {
	old, new *adapters.MongoStore
	cat      *catalog.Catalog
	spec     *transform.Spec
	engine   *shadow.Engine
}

var seq atomic.Int64

func newFixture(t *testing.T, onError string) *fixture {
	t.Helper()
	db := client.Database(fmt.Sprintf("shadow_test_%d", seq.Add(1)))
	t.Cleanup(func() { _ = db.Drop(context.Background()) })
	cat, err := catalog.Open(context.Background(), client, catalog.WithDatabase(db.Name()+"_meta"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Database(db.Name() + "_meta").Drop(context.Background()) })
	// Create the collections first: FerretDB (SQLite) can stall for seconds when concurrent
	// converges create a collection with their first writes.
	for _, name := range []string{"users", "users_v2"} {
		require.NoError(t, db.CreateCollection(context.Background(), name))
	}
	f := &fixture{old: adapters.NewMongoStore(db.Collection("users")), new: adapters.NewMongoStore(db.Collection("users_v2")), cat: cat}
	f.useSpec(t, onError)
	return f
}

func (f *fixture) useSpec(t *testing.T, onError string) {
	t.Helper()
	spec, err := transform.Parse("users-test.yaml", []byte(specYAML(onError)))
	require.NoError(t, err)
	f.spec = spec
	f.engine, err = shadow.NewEngine(shadow.Config{
		Migration: "users-test", SpecVersion: spec.Version,
		Old: f.old, New: f.new, Forward: spec.Forward, Reverse: spec.Reverse, DeadLetters: f.cat,
	})
	require.NoError(t, err)
}

func user(id string, age any) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "name", Value: "N " + id}, {Key: "age", Value: age}}
}

// expectTarget checks that new holds exactly the transform of old for key, or nothing.
func (f *fixture) expectTarget(t *testing.T, key string) {
	t.Helper()
	ctx := context.Background()
	src, serr := f.old.Get(ctx, key)
	dst, derr := f.new.Get(ctx, key)
	if serr != nil {
		require.ErrorIs(t, serr, adapters.ErrNotFound)
		require.ErrorIs(t, derr, adapters.ErrNotFound, "source lacks %s, so must the target", key)
		return
	}
	require.NoError(t, derr)
	want, err := f.spec.Forward(src)
	require.NoError(t, err)
	assert.True(t, transform.Equal(want, dst), "target %s: %v", key, transform.Diff(want, dst))
}

func TestConvergeLifecycle(t *testing.T) {
	f := newFixture(t, "fail")
	ctx := context.Background()
	converge := func(key string) shadow.Action {
		t.Helper()
		res, err := f.engine.Converge(ctx, key, shadow.Forward)
		require.NoError(t, err)
		f.expectTarget(t, key)
		return res.Action
	}
	assert.Equal(t, shadow.Unchanged, converge("u1"), "neither store has it")
	require.NoError(t, f.old.Upsert(ctx, user("u1", int32(30))))
	assert.Equal(t, shadow.Upserted, converge("u1"), "insert")
	assert.Equal(t, shadow.Unchanged, converge("u1"), "nothing to do the second time")
	require.NoError(t, f.old.Upsert(ctx, user("u1", int32(31))))
	assert.Equal(t, shadow.Upserted, converge("u1"), "update")
	require.NoError(t, f.old.Delete(ctx, "u1"))
	assert.Equal(t, shadow.Deleted, converge("u1"), "delete")
	assert.Equal(t, shadow.Unchanged, converge("u1"), "already deleted")

	// Reverse: a write to new flows back to old.
	require.NoError(t, f.new.Upsert(ctx, bson.D{{Key: "_id", Value: "u9"}, {Key: "profile", Value: bson.D{{Key: "name", Value: "Nine"}}}, {Key: "age", Value: int64(9)}, {Key: "v", Value: int32(2)}}))
	res, err := f.engine.Converge(ctx, "u9", shadow.Reverse)
	require.NoError(t, err)
	assert.Equal(t, shadow.Upserted, res.Action)
	back, err := f.old.Get(ctx, "u9")
	require.NoError(t, err)
	assert.True(t, transform.Equal(bson.D{{Key: "_id", Value: "u9"}, {Key: "name", Value: "Nine"}, {Key: "age", Value: int32(9)}}, back), "%v", back)
	res, err = f.engine.Converge(ctx, "u9", shadow.Forward)
	require.NoError(t, err)
	assert.Equal(t, shadow.Echo, res.Action, "a round trip ends in a no-op: no loop between the two paths")
}

// TestConvergeEchoKeepsALaterWrite is the race the echo guard closes: a forward converge
// writes new; before its echo (new's change) is converged back, old changes again. Converging
// the echo reverse would land new's older content over old's newer write, and the forward
// converge of that write would then find old and new equal: the write lost.
func TestConvergeEchoKeepsALaterWrite(t *testing.T) {
	f := newFixture(t, "fail")
	ctx := context.Background()
	require.NoError(t, f.old.Upsert(ctx, user("e1", int32(30))))
	res, err := f.engine.Converge(ctx, "e1", shadow.Forward)
	require.NoError(t, err)
	require.Equal(t, shadow.Upserted, res.Action)
	require.NoError(t, f.old.Upsert(ctx, user("e1", int32(31)))) // the later write
	for _, batch := range []bool{false, true} {
		var action shadow.Action
		if batch {
			rs, err := f.engine.ConvergeBatch(ctx, []adapters.Key{"e1"}, shadow.Reverse)
			require.NoError(t, err)
			action = rs[0].Action
		} else {
			res, err := f.engine.Converge(ctx, "e1", shadow.Reverse) // the echo
			require.NoError(t, err)
			action = res.Action
		}
		assert.Equal(t, shadow.Echo, action, "batch %v", batch)
		got, err := f.old.Get(ctx, "e1")
		require.NoError(t, err)
		assert.True(t, transform.Equal(user("e1", int32(31)), got), "the later write was overwritten: %v", got)
	}
	res, err = f.engine.Converge(ctx, "e1", shadow.Forward)
	require.NoError(t, err)
	assert.Equal(t, shadow.Upserted, res.Action)
	f.expectTarget(t, "e1")

	// A write to new that is not an echo flows back.
	require.NoError(t, f.new.Upsert(ctx, bson.D{{Key: "_id", Value: "e1"}, {Key: "profile", Value: bson.D{{Key: "name", Value: "Other"}}}, {Key: "age", Value: int64(5)}, {Key: "v", Value: int32(2)}}))
	res, err = f.engine.Converge(ctx, "e1", shadow.Reverse)
	require.NoError(t, err)
	assert.Equal(t, shadow.Upserted, res.Action)
}

func TestConvergeReplayedOutOfOrderEndsAtTheLatestState(t *testing.T) {
	f := newFixture(t, "fail")
	ctx := context.Background()
	// Three changes happen; their converges run late and in reverse order.
	for age := int32(1); age <= 3; age++ {
		require.NoError(t, f.old.Upsert(ctx, user("k", age)))
	}
	for i := 0; i < 3; i++ {
		_, err := f.engine.Converge(ctx, "k", shadow.Forward)
		require.NoError(t, err)
	}
	got, err := f.new.Get(ctx, "k")
	require.NoError(t, err)
	v, _ := lookup(got, "age")
	assert.Equal(t, int64(3), v)
	f.expectTarget(t, "k")
}

func lookup(d bson.D, k string) (any, bool) {
	for _, e := range d {
		if e.Key == k {
			return e.Value, true
		}
	}
	return nil, false
}

func TestConcurrentConvergesOfOneKeyAreSerialized(t *testing.T) {
	f := newFixture(t, "fail")
	ctx := context.Background()
	require.NoError(t, f.old.Upsert(ctx, user("hot", int32(5))))
	var upserts, unchanged atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := f.engine.Converge(ctx, "hot", shadow.Forward)
			assert.NoError(t, err)
			switch res.Action {
			case shadow.Upserted:
				upserts.Add(1)
			case shadow.Unchanged:
				unchanged.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(1), upserts.Load(), "only the first converge writes; the others see it done")
	assert.Equal(t, int64(15), unchanged.Load())
	f.expectTarget(t, "hot")
}

func TestDeadLettersAndRetryAfterTheSpecIsFixed(t *testing.T) {
	f := newFixture(t, "fail")
	ctx := context.Background()
	require.NoError(t, f.old.Upsert(ctx, user("bad", "thirty")))
	res, err := f.engine.Converge(ctx, "bad", shadow.Forward)
	require.NoError(t, err, "a bad document never stops the pipeline")
	assert.Equal(t, shadow.DeadLettered, res.Action)
	assert.Contains(t, res.Reason, "age")
	_, err = f.new.Get(ctx, "bad")
	assert.ErrorIs(t, err, adapters.ErrNotFound, "the target is left alone")

	dls, err := f.cat.DeadLetters(ctx, "users-test", catalog.DeadLetterFilter{})
	require.NoError(t, err)
	require.Len(t, dls, 1)
	assert.Equal(t, "bad", dls[0].Key)
	assert.Equal(t, "forward[1] convert age", dls[0].Step)
	assert.Equal(t, f.spec.Version, dls[0].SpecVersion)

	// The same spec retries nothing; a fixed spec (age becomes null) converges it.
	results, err := f.engine.RetryDeadLetters(ctx)
	require.NoError(t, err)
	assert.Empty(t, results)
	f.useSpec(t, "null")
	results, err = f.engine.RetryDeadLetters(ctx)
	require.NoError(t, err)
	require.Len(t, results, 1, "%+v", results)
	assert.Equal(t, shadow.Upserted, results[0].Action, "%+v", results)
	n, err := f.cat.CountDeadLetters(ctx, "users-test")
	require.NoError(t, err)
	assert.Zero(t, n, "resolved once converged")
	got, err := f.new.Get(ctx, "bad")
	require.NoError(t, err)
	age, ok := lookup(got, "age")
	assert.True(t, ok)
	assert.Nil(t, age)
}

func TestConvergeBatch(t *testing.T) {
	f := newFixture(t, "fail")
	ctx := context.Background()
	var keys []adapters.Key
	for i := 0; i < 40; i++ {
		k := fmt.Sprintf("b%02d", i)
		keys = append(keys, k)
		require.NoError(t, f.old.Upsert(ctx, user(k, int32(i))))
	}
	// b00-b09 already converged, b10-b14 deleted at the source, b15 cannot transform.
	_, err := f.engine.ConvergeBatch(ctx, keys[:15], shadow.Forward)
	require.NoError(t, err)
	for _, k := range keys[10:15] {
		require.NoError(t, f.old.Delete(ctx, k))
	}
	require.NoError(t, f.old.Upsert(ctx, user("b15", "x")))
	keys = append(keys, "b03", "missing") // a duplicate and a key neither store has

	results, err := f.engine.ConvergeBatch(ctx, keys, shadow.Forward)
	require.NoError(t, err)
	require.Len(t, results, 41)
	count := map[shadow.Action]int{}
	for _, r := range results {
		count[r.Action]++
	}
	assert.Equal(t, map[shadow.Action]int{shadow.Unchanged: 11, shadow.Deleted: 5, shadow.DeadLettered: 1, shadow.Upserted: 24}, count)
	for _, k := range keys {
		if k != "b15" {
			f.expectTarget(t, k.(string))
		}
	}
	again, err := f.engine.ConvergeBatch(ctx, keys, shadow.Forward)
	require.NoError(t, err)
	for _, r := range again {
		if r.Key != "b15" {
			assert.Equal(t, shadow.Unchanged, r.Action, "%v", r.Key)
		}
	}
}

func TestPool(t *testing.T) {
	f := newFixture(t, "fail")
	ctx := context.Background()
	var mu sync.Mutex
	seen := map[string]shadow.Action{}
	pool := f.engine.NewPool(4, 8, func(r shadow.Result, err error) {
		assert.NoError(t, err)
		mu.Lock()
		seen[r.Key.(string)] = r.Action
		mu.Unlock()
	})
	for i := 0; i < 30; i++ {
		k := fmt.Sprintf("p%02d", i)
		require.NoError(t, f.old.Upsert(ctx, user(k, int32(i))))
		require.NoError(t, pool.Submit(ctx, k, shadow.Forward))
	}
	res, err := pool.Do(ctx, "p00", shadow.Forward)
	require.NoError(t, err)
	assert.Contains(t, []shadow.Action{shadow.Upserted, shadow.Unchanged}, res.Action)
	require.NoError(t, pool.Close(ctx))
	mu.Lock()
	assert.Len(t, seen, 30)
	mu.Unlock()
	for i := 0; i < 30; i++ {
		f.expectTarget(t, fmt.Sprintf("p%02d", i))
	}
	assert.ErrorIs(t, pool.Submit(ctx, "late", shadow.Forward), shadow.ErrPoolClosed)
	assert.False(t, pool.TrySubmit("late", shadow.Forward))
}

// TestConvergeToDynamoDB converges MongoDB → DynamoDB (moto): the comparison goes through the
// store's value mapping, so an unchanged document is recognised as such.
func TestConvergeToDynamoDB(t *testing.T) {
	moto := testenv.StartMotoT(t)
	ctx := context.Background()
	table := testenv.UniqueName("users_v2")
	require.NoError(t, testenv.CreateTable(ctx, moto.DynamoDB(), testenv.Table{Name: table, Key: "pk"}))
	dyn, err := adapters.NewDynamoStore(ctx, table, "pk", adapters.DynamoClient(moto.DynamoDB()))
	require.NoError(t, err)

	spec, err := transform.Parse("dyn.yaml", []byte(`name: users-dyn
source:
  mongodb: {uri: "mongodb://unused/", database: d, collection: users}
target:
  dynamodb: {table: `+table+`, region: us-east-1}
key:
  partition: pk
forward:
  - rename: {from: name, to: profile.name}
  - convert: {path: age, from: int32, to: int64}
`))
	require.NoError(t, err)
	db := client.Database(fmt.Sprintf("shadow_dyn_%d", seq.Add(1)))
	t.Cleanup(func() { _ = db.Drop(context.Background()) })
	cat, err := catalog.Open(ctx, client, catalog.WithDatabase(db.Name()+"_meta"))
	require.NoError(t, err)
	old := adapters.NewMongoStore(db.Collection("users"))
	e, err := shadow.NewEngine(shadow.Config{Migration: "users-dyn", SpecVersion: spec.Version, Old: old, New: dyn, Forward: spec.Forward, Reverse: spec.Reverse, DeadLetters: cat})
	require.NoError(t, err)

	require.NoError(t, old.Upsert(ctx, user("d1", int32(40))))
	res, err := e.Converge(ctx, "d1", shadow.Forward)
	require.NoError(t, err)
	assert.Equal(t, shadow.Upserted, res.Action)
	res, err = e.Converge(ctx, "d1", shadow.Forward)
	require.NoError(t, err)
	assert.Equal(t, shadow.Unchanged, res.Action)
	item, err := dyn.Get(ctx, "d1")
	require.NoError(t, err)
	name, _ := lookup(item, "profile")
	assert.Equal(t, bson.D{{Key: "name", Value: "N d1"}}, name)
	require.NoError(t, old.Delete(ctx, "d1"))
	res, err = e.Converge(ctx, "d1", shadow.Forward)
	require.NoError(t, err)
	assert.Equal(t, shadow.Deleted, res.Action)
}
