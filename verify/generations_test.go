package verify_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/transform"
	"github.com/tandemdb/tandem/verify"
)

// withVerifySection reparses the fixture's spec with a verify section appended.
func (f *fixture) withVerifySection(t *testing.T, section string) {
	t.Helper()
	data, err := os.ReadFile("../examples/users-v2.yaml")
	require.NoError(t, err)
	f.spec, err = transform.Parse("users-v2.yaml", append(data, []byte("\nverify:\n"+section)...))
	require.NoError(t, err)
}

// waitFor polls cond every 20ms for at most d; the bound keeps a broken build from hanging.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitPending waits (at most a minute) until the catalog holds a pending difference for key.
// It runs off the test's goroutine, so it reports with assert rather than stopping the test.
func (f *fixture) waitPending(t *testing.T, key string) {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		all, err := f.cat.VerifyMismatches(context.Background(), migration, catalog.VerifyMismatchQuery{
			States: []string{catalog.MismatchPending}, Limit: 100000,
		})
		if err == nil && slices.ContainsFunc(all, func(m catalog.VerifyMismatch) bool { return m.KeyString == key }) {
			return
		}
	}
	assert.Fail(t, "no pending difference recorded", "key %s", key)
}

func (f *fixture) state(t *testing.T) catalog.VerifyState {
	t.Helper()
	st, err := f.cat.VerifyState(context.Background(), migration)
	require.NoError(t, err)
	return st
}

// TestYoungDifferenceIsPending: a difference younger than the settle time is pending, not a
// mismatch: the recheck waits for it, the state counts it as pending and in the backlog, and
// the gate says the run is still rechecking and the backlog is over its bound.
func TestYoungDifferenceIsPending(t *testing.T) {
	f := newFixture(t)
	f.seed(t, 20)
	ctx := context.Background()
	require.NoError(t, f.new.Delete(ctx, userID(3)))
	require.NoError(t, f.new.Delete(ctx, userID(12)))
	cfg := f.config()
	cfg.Settle, cfg.MaxBacklog = time.Hour, 1
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := verify.Run(runCtx, cfg); done <- err }()
	waitFor(t, time.Minute, "the first recheck generation", func() bool {
		st, err := f.cat.VerifyState(ctx, migration)
		return err == nil && st.Generation == 1
	})
	st := f.state(t)
	assert.True(t, st.FullPassDone)
	assert.Equal(t, int64(2), st.Pending)
	assert.Zero(t, st.Confirmed.Total(), "nothing is confirmed before it is an hour old")
	assert.Equal(t, int64(2), st.Backlog)
	assert.Equal(t, time.Hour, st.Settle)
	g := f.verificationGate(t)
	assert.False(t, g.OK)
	assert.Contains(t, g.Detail, "it is still rechecking (generation 1)")
	assert.Contains(t, g.Detail, "recheck backlog 2 keys > limit 1")
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	for _, m := range f.found(t) {
		assert.Equal(t, catalog.MismatchPending, m.State, m.KeyString)
		assert.Equal(t, catalog.KindMissing, m.Kind)
	}
	saved, _ := f.newestSummary(t)
	assert.False(t, saved.Clean)
	assert.NotEmpty(t, saved.Aborted)
}

// TestLaggingConvergeIsNotAMismatch: a writer has updated the old store and converges the new
// store only some time after the scan saw the difference (an async shadow write): with a settle
// time longer than that lag the difference is pending at first and resolved on the recheck.
// The control holds the converge back until the run is over: then the recheck confirms it.
//
// The old store is written before the run and the converge waits until the pending difference
// is in the catalog, so the outcome does not depend on which partition a worker takes first
// or on how fast this machine is.
func TestLaggingConvergeIsNotAMismatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		settle  time.Duration
		holdOff bool // converge only after the run
	}{
		{"converged within the settle time", 2 * time.Second, false},
		{"control: never converged during the run", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.seed(t, 30)
			cfg := f.config()
			cfg.Plan, cfg.Concurrency, cfg.Settle = verify.PlanLookup, 1, tc.settle
			release := make(chan struct{})
			var wg sync.WaitGroup
			var reached sync.Once
			changed := userID(29)
			doc := setField(user(29), "name", "Renamed, converged late")
			require.NoError(t, f.old.Upsert(context.Background(), doc))
			verify.SetAfterRead(&cfg, func(p verify.Pass, keys []adapters.Key) {
				if p != verify.PassOld || !slices.Contains(keys, adapters.Key(changed)) {
					return
				}
				reached.Do(func() {
					wg.Go(func() {
						if tc.holdOff {
							<-release
						} else {
							f.waitPending(t, adapters.KeyString(changed))
						}
						out, err := f.spec.Forward(doc)
						assert.NoError(t, err)
						assert.NoError(t, f.new.Upsert(context.Background(), out))
					})
				})
			})
			sum, err := verify.Run(context.Background(), cfg)
			close(release)
			wg.Wait()
			require.NoError(t, err)
			got := f.found(t)
			require.Contains(t, got, adapters.KeyString(changed), "the difference was seen")
			m := got[adapters.KeyString(changed)]
			if tc.holdOff {
				assert.Equal(t, catalog.MismatchConfirmed, m.State)
				assert.False(t, sum.Clean)
				return
			}
			assert.Equal(t, catalog.MismatchResolved, m.State, "gone on the recheck")
			assert.False(t, m.ConfirmedOnce)
			assert.GreaterOrEqual(t, m.LastSeen.Sub(m.FirstSeen), tc.settle, "rechecked no sooner than the settle time")
			assert.True(t, sum.Clean, "%+v", sum)
			st := f.state(t)
			assert.Zero(t, st.Confirmed.Total())
			assert.Zero(t, st.Pending)
		})
	}
}

// TestGenerationsConverge: the full pass finds three differences and a writer changes five
// other keys during it (announced through Changes); generation 1 rechecks the eight,
// confirms and repairs the three; generation 2 rechecks the three repaired keys and finds
// them equal; then nothing is left and the run finishes.
func TestGenerationsConverge(t *testing.T) {
	f := newFixture(t)
	f.seed(t, 40)
	ctx := context.Background()
	for _, i := range []int{5, 17, 29} {
		require.NoError(t, f.new.Upsert(ctx, setField(f.forward(t, user(i)), "schema_version", int32(7))))
	}
	changes := &verify.ChangeList{}
	cfg := f.config()
	cfg.Changes, cfg.Repair = changes, f.convergeForward
	var once sync.Once
	verify.SetAfterRead(&cfg, func(p verify.Pass, _ []adapters.Key) {
		once.Do(func() {
			for _, i := range []int{30, 31, 32, 33, 34} {
				assert.NoError(t, f.write(userID(i), setField(user(i), "name", "Changed")))
				changes.Add(userID(i))
			}
		})
	})
	sum, err := verify.Run(ctx, cfg)
	require.NoError(t, err)
	st := f.state(t)
	require.Len(t, st.Generations, 3, "%+v", st.Generations)
	assert.Equal(t, catalog.GenerationFull, st.Generations[0].Kind)
	assert.Equal(t, int64(8), st.Generations[1].Keys, "3 differing + 5 changed")
	assert.Equal(t, int64(3), st.Generations[1].Found.Differing)
	assert.Equal(t, int64(3), st.Generations[2].Keys, "the 3 repaired keys")
	assert.Zero(t, st.Generations[2].Found.Total(), "repaired")
	for _, g := range st.Generations {
		assert.False(t, g.Finished.IsZero(), "generation %d finished", g.Generation)
	}
	assert.False(t, st.Finished.IsZero())
	assert.Zero(t, st.Confirmed.Total(), "nothing outstanding")
	assert.Equal(t, int64(3), st.FoundTotal.Differing)
	assert.Equal(t, int64(3), sum.Repaired)
	assert.False(t, sum.Clean, "a run that repaired mismatches found them")
	broken := map[string]bool{}
	for _, i := range []int{5, 17, 29} {
		broken[adapters.KeyString(userID(i))] = true
	}
	for k, m := range f.found(t) {
		assert.Equal(t, catalog.MismatchResolved, m.State, k)
		if broken[k] {
			assert.True(t, m.ConfirmedOnce, k)
			assert.False(t, m.Repaired.IsZero(), k)
			continue
		}
		// A changed key that the other worker read between the writer's two writes was
		// pending, and the recheck cleared it: never a mismatch.
		assert.False(t, m.ConfirmedOnce, k)
		assert.Contains(t, []string{userID(30), userID(31), userID(32), userID(33), userID(34)}, m.Key, k)
	}
}

// TestInvariantsAndFieldPaths: the spec's invariants are checked on every new document: one
// that the forward transform carries over from a bad old document breaks an invariant
// without any field differing; a changed field is recorded with its path, types and value
// hashes, and the values only when asked.
func TestInvariantsAndFieldPaths(t *testing.T) {
	for _, plan := range []string{verify.PlanMerge, verify.PlanJoin} {
		t.Run(plan, func(t *testing.T) { testInvariantsAndFieldPaths(t, plan) })
	}
}

func testInvariantsAndFieldPaths(t *testing.T, plan string) {
	f := newFixture(t)
	f.withVerifySection(t, `  invariants:
    - name: adult
      expr: 'doc.age >= 18'
    - name: email-domain
      expr: 'doc.email_domain == doc.profile.email.split("@")[1]'
`)
	f.seed(t, 20)
	ctx := context.Background()
	require.NoError(t, f.write(userID(4), setField(user(4), "age", int32(12))))
	require.NoError(t, f.new.Upsert(ctx, setField(f.forward(t, user(9)), "email_domain", "example.org")))
	cfg := f.config()
	cfg.Invariants, cfg.Plan, cfg.SpillDir = f.spec.Verify.Invariants, plan, t.TempDir()
	_, err := verify.Run(ctx, cfg)
	require.NoError(t, err)
	got := f.found(t)
	require.Len(t, got, 2)
	child := got[adapters.KeyString(userID(4))]
	assert.Equal(t, catalog.KindInvariantBroken, child.Kind)
	assert.Equal(t, catalog.MismatchConfirmed, child.State)
	assert.Contains(t, child.Detail, "invariant adult (spec line")
	assert.Contains(t, child.Detail, "is false: doc.age >= 18")
	wrong := got[adapters.KeyString(userID(9))]
	assert.Equal(t, catalog.KindDiffering, wrong.Kind, "a differing field is reported as such, before invariants")
	st := f.state(t)
	assert.Equal(t, int64(1), st.Confirmed.InvariantBroken)
	assert.Equal(t, int64(1), st.Confirmed.Differing)

	top, err := f.cat.VerifyMismatches(ctx, migration, catalog.VerifyMismatchQuery{})
	require.NoError(t, err)
	var fields []catalog.VerifyFieldDiff
	for _, m := range top {
		if m.KeyString == adapters.KeyString(userID(9)) {
			fields = m.Fields
		}
	}
	require.Len(t, fields, 1)
	assert.Equal(t, "email_domain", fields[0].Path)
	assert.Equal(t, "string", fields[0].WantType)
	assert.Equal(t, "string", fields[0].GotType)
	assert.Len(t, fields[0].WantHash, 16)
	assert.NotEqual(t, fields[0].WantHash, fields[0].GotHash)
	assert.Nil(t, fields[0].Want, "values are left out unless asked")
	withValues, err := f.cat.VerifyMismatches(ctx, migration, catalog.VerifyMismatchQuery{IncludeValues: true})
	require.NoError(t, err)
	for _, m := range withValues {
		if m.KeyString == adapters.KeyString(userID(9)) {
			assert.Equal(t, "example.com", m.Fields[0].Want)
			assert.Equal(t, "example.org", m.Fields[0].Got)
		}
	}
}

// TestIndexCheck: an index the spec requires and the new collection lacks is a confirmed
// mismatch of kind index_missing; once created, the next run is clean.
func TestIndexCheck(t *testing.T) {
	f := newFixture(t)
	f.withVerifySection(t, "  indexes:\n    - keys: {email_domain: 1}\n    - name: by_age\n      keys: {age: -1}\n")
	f.seed(t, 10)
	ctx := context.Background()
	coll := f.new.(*adapters.MongoStore).Collection()
	_, err := coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "email_domain", Value: 1}}})
	require.NoError(t, err)
	cfg := f.config()
	cfg.Indexes = f.spec.RequiredIndexes()
	sum, err := verify.Run(ctx, cfg)
	require.NoError(t, err)
	got := f.found(t)
	require.Len(t, got, 1, "only by_age is missing")
	for _, m := range got {
		assert.Equal(t, catalog.KindIndexMissing, m.Kind)
		assert.Equal(t, "the new store has no index {keys: {age: -1}, name: by_age}", m.Detail)
	}
	assert.False(t, sum.Clean)
	g := f.verificationGate(t)
	assert.Contains(t, g.Detail, "index missing 1")

	_, err = coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: bson.D{{Key: "age", Value: -1}}, Options: options.Index().SetName("by_age")})
	require.NoError(t, err)
	sum, err = verify.Run(ctx, cfg)
	require.NoError(t, err)
	assert.True(t, sum.Clean, "%+v", sum)
	assert.Empty(t, f.found(t))
}

// TestPlansAgree: the ordered merge of two MongoDB scans, the join of their spilled scans
// and the batched look-ups find the same, key for key and kind for kind, on the same stores.
func TestPlansAgree(t *testing.T) {
	merged := newFixture(t)
	n := 300
	if raceEnabled {
		n = 100 // look-ups are slow on FerretDB: {_id: {$in: …}} scans the collection
	}
	want := merged.plant(t, n)
	lookups, joined := newFixture(t), newFixture(t)
	lookups.old, lookups.new = merged.old, merged.new
	joined.old, joined.new = merged.old, merged.new
	ctx := context.Background()

	mcfg := merged.config()
	mcfg.Batch = 50
	_, err := verify.Run(ctx, mcfg)
	require.NoError(t, err)
	cfg := lookups.config()
	cfg.Plan, cfg.Batch = verify.PlanLookup, 50
	_, err = verify.Run(ctx, cfg)
	require.NoError(t, err)
	spill := t.TempDir()
	jcfg := joined.config()
	jcfg.Plan, jcfg.Batch, jcfg.SpillDir = verify.PlanJoin, 50, spill
	_, err = verify.Run(ctx, jcfg)
	require.NoError(t, err)
	left, err := filepath.Glob(filepath.Join(spill, "*"))
	require.NoError(t, err)
	assert.Empty(t, left, "the join removes its spill files and their directories when it is done")

	stores := func(f *fixture) map[string]bool {
		run, err := f.cat.LatestVerifyRun(ctx, migration)
		require.NoError(t, err)
		tasks, err := f.cat.VerifyTasks(ctx, migration, run.RunID, 0)
		require.NoError(t, err)
		out := map[string]bool{}
		for _, t := range tasks {
			out[t.Store] = true
		}
		return out
	}
	assert.Equal(t, map[string]bool{catalog.StoreBoth: true}, stores(merged))
	assert.Equal(t, map[string]bool{catalog.StoreOld: true, catalog.StoreNew: true}, stores(lookups))
	assert.Equal(t, map[string]bool{catalog.StoreJoin: true}, stores(joined))
	merged.assertFoundExactly(t, want)
	lookups.assertFoundExactly(t, want)
	joined.assertFoundExactly(t, want)
	a, b, c := merged.found(t), lookups.found(t), joined.found(t)
	for k, m := range a {
		assert.Equal(t, b[k].Detail, m.Detail, k)
		assert.Equal(t, c[k].Detail, m.Detail, k)
	}
	assert.Equal(t, merged.state(t).Compared, lookups.state(t).Compared)
	assert.Equal(t, merged.state(t).Compared, joined.state(t).Compared)
	assert.Equal(t, int64(n+n/50), joined.state(t).Compared)
	// The join's rows: each part's documents read, then the keys compared.
	var oldDocs, newDocs int64
	for _, p := range joined.state(t).Partitions {
		if p.Store != catalog.StoreJoin {
			oldDocs, newDocs = oldDocs+p.OldDocs, newDocs+p.NewDocs
		}
	}
	assert.Equal(t, int64(n), oldDocs)
	assert.Equal(t, int64(n-n/50+n/50), newDocs, "every 50th is missing in new, n/50 are only there")
}

// TestKeyOrderIsTheServers: the merge's key order is the order the server returns _id in,
// across the common key types.
func TestKeyOrderIsTheServers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	coll := f.old.(*adapters.MongoStore).Collection()
	ids := []any{"b", "a", "B", "ab", "", int32(3), int64(-2), 2.5, int32(10), bson.NewObjectID(), bson.NewObjectID(), true, false,
		bson.NewDateTimeFromTime(time.Unix(5, 0)), bson.NewDateTimeFromTime(time.Unix(1, 0)), "é", "z"}
	for _, id := range ids {
		_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}})
		require.NoError(t, err)
	}
	var sorted []any
	err := f.old.Scan(ctx, adapters.Partition{}, adapters.ScanOptions{}, func(docs []bson.D) error {
		for _, d := range docs {
			sorted = append(sorted, d[0].Value)
		}
		return nil
	})
	require.NoError(t, err)
	require.Len(t, sorted, len(ids))
	for i := 1; i < len(sorted); i++ {
		assert.Negative(t, verify.CompareKeys(sorted[i-1], sorted[i]), "%v (%T) before %v (%T)", sorted[i-1], sorted[i-1], sorted[i], sorted[i])
	}
}
