package verify_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/verify"
)

// changeLog is the change source of the continuous kill test: the test's writer announces
// every key it changed by inserting {key, at} into a collection of the fixture's database, and
// the verifier child reads it as its Config.Changes. It stands in, across the child's deaths,
// for the change feed a change-stream consumer gives the verifier (verify.ChangeList lives in
// one process's memory, which a kill forgets).
type changeLog struct{ coll *mongo.Collection }

func (f *fixture) changeLog() changeLog {
	return changeLog{coll: f.old.(*adapters.MongoStore).Collection().Database().Collection("changes")}
}

// announce records key as changed now.
func (l changeLog) announce(ctx context.Context, key string) error {
	_, err := l.coll.InsertOne(ctx, bson.D{{Key: "key", Value: key}, {Key: "at", Value: time.Now().UTC()}})
	return err
}

// ChangedSince implements verify.Changes.
func (l changeLog) ChangedSince(ctx context.Context, since time.Time, limit int) ([]adapters.Key, error) {
	cur, err := l.coll.Find(ctx, bson.D{{Key: "at", Value: bson.D{{Key: "$gte", Value: since}}}},
		options.Find().SetSort(bson.D{{Key: "at", Value: 1}}).SetLimit(int64(limit)))
	if err != nil {
		return nil, fmt.Errorf("reading the test's change log: %w", err)
	}
	var docs []struct {
		Key string `bson:"key"`
	}
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("reading the test's change log: %w", err)
	}
	out := make([]adapters.Key, len(docs))
	for i, d := range docs {
		out[i] = d.Key
	}
	return out, nil
}

// continuousConfig turns a child's config into the continuous kill test's: the change log as
// its Changes, a rolling sample, a generation every few hundred milliseconds at most, drift
// every second, and a settle time of about the writer's lag.
func (f *fixture) continuousConfig(cfg *verify.Config) {
	cfg.Changes = f.changeLog()
	// Drift is recorded every second, not more often: each record computes the run's state
	// from the catalog, which on the test server slows every other catalog write.
	cfg.SampleRate, cfg.DriftEvery, cfg.Poll, cfg.RecheckEvery = 100, time.Second, 50*time.Millisecond, 300*time.Millisecond
	cfg.Settle = 400 * time.Millisecond
}

// continuousProgress grows whenever a continuous run gets further: verifyProgress, and the
// keys its rolling sample compared.
func continuousProgress(f *fixture) int64 {
	st, err := f.cat.VerifyState(context.Background(), migration)
	if err != nil {
		return -1
	}
	return verifyProgress(f) + st.Sampled
}

// writer changes the users of keys until ctx ends, as the proxy's dual writes do: most
// writes go to old then new, then are announced; one in three lags (old written and
// announced, new a moment later, announced again), so that the verifier sees differences
// that converge. It returns when ctx ends with the number of writes and the first error that
// retries did not get past.
func (f *fixture) writer(ctx context.Context, keys []int, log changeLog) (int, error) {
	bg := context.Background() // a write begun is finished: a half-written key would differ
	retry := func(what string, fn func() error) error {
		var err error
		for attempt := 0; attempt < 20; attempt++ {
			if err = fn(); err == nil {
				return nil
			}
			time.Sleep(100 * time.Millisecond) // FerretDB may be busy with a killed child's connections
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	writes := 0
	for ctx.Err() == nil {
		i := keys[rand.IntN(len(keys))]
		doc := setField(user(i), "name", fmt.Sprintf("User %d, write %d", i, writes))
		key := userID(i)
		out, err := f.spec.Forward(doc)
		if err != nil {
			return writes, err
		}
		steps := []struct {
			what string
			fn   func() error
		}{
			{"writing old " + key, func() error { return f.old.Upsert(bg, doc) }},
			{"writing new " + key, func() error { return f.new.Upsert(bg, out) }},
			{"announcing " + key, func() error { return log.announce(bg, key) }},
		}
		if rand.IntN(3) == 0 {
			lag := time.Duration(50+rand.IntN(200)) * time.Millisecond
			steps = append([]struct {
				what string
				fn   func() error
			}{steps[0], {"announcing " + key, func() error { return log.announce(bg, key) }},
				{"lagging", func() error { time.Sleep(lag); return nil }}}, steps[1:]...)
		}
		for _, s := range steps {
			if err := retry(s.what, s.fn); err != nil {
				return writes, err
			}
		}
		writes++
		sleepCtx(ctx, 30*time.Millisecond)
	}
	return writes, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// TestContinuousSurvivesKills runs continuous verification in a child process and SIGKILLs it
// at random moments, ten times or more (in the full pass, and after it: in recheck
// generations, the rolling sample, a drift record), restarting it each time, while a writer
// changes keys and announces them through the change source the child reads. Differences are
// planted before the start (found by the full pass) and after the full pass (one kind
// announced, found by a recheck; one silent, found by the rolling sample), and some keys lag:
// their new document is written only once the verifier has recorded them as different. Once
// the writer stops, a last child runs until the state settles and is killed too. Then: every
// planted difference is recorded once, confirmed, with its kind; every key that differed on
// the way and converged (the lagging ones, the writer's) is resolved, none confirmed or
// pending; the legacy mismatch list names no key twice; the one run was resumed by every
// restart, its full pass compared each key once, its state, drift and gate agree with the
// mismatches; and a fresh uninterrupted comparison finds exactly the planted differences.
func TestContinuousSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	f := newFixture(t)
	n := 300
	if raceEnabled {
		n = 100
	}
	want := f.plant(t, n)
	// The writer changes users other than the planted (i%50 of 7, 19, 33), those planted
	// after the full pass (11: announced, 23: silent) and those that lag on purpose after it
	// (29: old is written and announced, new only once the verifier has recorded the
	// difference, so that each is seen to differ and must end resolved).
	var writerKeys, announced, silent, lagging []int
	for i := range n {
		switch i % 50 {
		case 7, 19, 33:
		case 11:
			announced = append(announced, i)
		case 23:
			silent = append(silent, i)
		case 29:
			lagging = append(lagging, i)
		default:
			writerKeys = append(writerKeys, i)
		}
	}
	// The writer works on a few hot keys, so that its writes race the rechecks of its
	// earlier writes.
	writerKeys = writerKeys[:min(len(writerKeys), 20)]
	ctx := context.Background()
	log := f.changeLog()
	writerCtx, stopWriter := context.WithCancel(ctx)
	defer stopWriter()
	var writes int
	var writeErr error
	var wg sync.WaitGroup
	wg.Go(func() { writes, writeErr = f.writer(writerCtx, writerKeys, log) })

	kills, inFullPass, afterFullPass := 0, 0, 0
	plantedLate := false
	converged := map[int]bool{} // the lagging keys whose new document was written
	for kills < 40 && (kills < 10 || afterFullPass < 5 || len(converged) < len(lagging)) {
		cmd, out, err := f.child("c", "TANDEM_VERIFY_CONTINUOUS=1")
		require.NoError(t, err)
		// Kill once the child got further: after the full pass, every other life once a
		// recheck task is done (not just a batch of the sample), so that the kills land in
		// the rechecks too and the generations get on.
		progress := continuousProgress
		if afterFullPass%2 == 1 {
			progress = verifyProgress
		}
		before := progress(f)
		for deadline := time.Now().Add(testLease + 30*time.Second); progress(f) <= before && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		require.Error(t, waitExit(cmd, 10*time.Second), "a continuous verifier ended by itself:\n%s", out.String())
		kills++
		st, err := f.cat.VerifyState(ctx, migration)
		if err != nil {
			t.Logf("kill %d: no state yet (%v)", kills, err)
			inFullPass++
			continue
		}
		t.Logf("kill %d: generation %d, %d keys compared in the full pass, %d sampled, %d confirmed, %d pending",
			kills, st.Generation, st.Compared, st.Sampled, st.Confirmed.Total(), st.Pending)
		if !st.FullPassDone {
			inFullPass++
			continue
		}
		afterFullPass++
		if !plantedLate {
			// Corrupt the new store after the full pass: announced keys are rechecked,
			// silent ones only the rolling sample can find.
			for _, i := range announced {
				require.NoError(t, f.new.Upsert(ctx, setField(f.forward(t, user(i)), "schema_version", int32(9))))
				require.NoError(t, log.announce(ctx, userID(i)))
				want[adapters.KeyString(userID(i))] = catalog.KindDiffering
			}
			for _, i := range silent {
				require.NoError(t, f.new.Delete(ctx, userID(i)))
				want[adapters.KeyString(userID(i))] = catalog.KindMissing
			}
			for _, i := range lagging {
				require.NoError(t, f.old.Upsert(ctx, setField(user(i), "name", "lagging")))
				require.NoError(t, log.announce(ctx, userID(i)))
			}
			plantedLate = true
			continue
		}
		for _, i := range lagging {
			if m, ok, err := f.cat.VerifyMismatchOf(ctx, migration, st.RunID, adapters.KeyString(userID(i))); err == nil && ok && !converged[i] {
				t.Logf("lagging %s recorded %s; its converge lands", userID(i), m.State)
				require.NoError(t, f.new.Upsert(ctx, f.forward(t, setField(user(i), "name", "lagging"))))
				require.NoError(t, log.announce(ctx, userID(i)))
				converged[i] = true
			}
		}
	}
	stopWriter()
	wg.Wait()
	require.NoError(t, writeErr, "the writer")
	writerStopped := time.Now().UTC()
	t.Logf("%d kills (%d in the full pass, %d after it), %d writes", kills, inFullPass, afterFullPass, writes)
	assert.GreaterOrEqual(t, kills, 10, "kills")
	assert.Positive(t, inFullPass, "kills in the full pass")
	assert.GreaterOrEqual(t, afterFullPass, 5, "kills after the full pass")
	require.Len(t, converged, len(lagging), "every lagging key was seen to differ, then converged")
	require.True(t, plantedLate, "the late corruptions were planted")

	// A last child runs until every announcement was rechecked (a generation started after
	// the writer stopped has finished), the state holds exactly the planted differences, and a
	// drift point records it.
	cmd, out, err := f.child("last", "TANDEM_VERIFY_CONTINUOUS=1")
	require.NoError(t, err)
	settled := func() bool {
		st, err := f.cat.VerifyState(ctx, migration)
		if err != nil || st.Pending != 0 || st.Confirmed.Total() != int64(len(want)) || len(st.Generations) == 0 {
			return false
		}
		last := st.Generations[len(st.Generations)-1]
		if last.Started.Before(writerStopped) || last.Finished.IsZero() {
			return false
		}
		all, err := f.cat.VerifyMismatches(ctx, migration, catalog.VerifyMismatchQuery{
			States: []string{catalog.MismatchPending, catalog.MismatchConfirmed}, Limit: 100000})
		if err != nil || len(all) != len(want) {
			return false
		}
		for _, m := range all {
			if want[m.KeyString] != m.Kind || m.State != catalog.MismatchConfirmed {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(5 * time.Minute); !settled(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			st, err := f.cat.VerifyState(ctx, migration)
			open, _ := f.cat.VerifyMismatches(ctx, migration, catalog.VerifyMismatchQuery{
				States: []string{catalog.MismatchPending, catalog.MismatchConfirmed}, Limit: 100000})
			_ = cmd.Process.Kill()
			_ = waitExit(cmd, 10*time.Second)
			t.Fatalf("the last child did not settle on the %d planted differences in 5m: state %+v (%v), open %+v; its output:\n%s", len(want), st, err, open, out.String())
		}
	}
	settledAt := time.Now().UTC()
	t.Logf("settled %s after the writer stopped", settledAt.Sub(writerStopped).Round(time.Millisecond))
	waitFor(t, time.Minute, "a drift point after the state settled", func() bool {
		d, err := f.cat.VerifyDrift(ctx, migration, "", settledAt)
		return err == nil && len(d) > 0
	})
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	require.Error(t, waitExit(cmd, 10*time.Second), "the last child ended by itself:\n%s", out.String())
	if os.Getenv("TANDEM_TEST_LOG") != "" {
		t.Logf("the last child's output:\n%s", out.String())
	}

	st := f.state(t)
	assert.Equal(t, "run-000001", st.RunID, "every restart resumed the one run")
	assert.Equal(t, verify.ModeContinuous, st.Mode)
	assert.True(t, st.Finished.IsZero(), "a continuous run never finishes")
	assert.True(t, st.FullPassDone)
	assert.Empty(t, st.Uncovered)
	assert.Equal(t, int64(n+n/50), st.Compared, "every key of both stores compared once in the full pass")
	assert.Positive(t, st.Sampled, "the rolling sample ran")
	assert.Zero(t, st.Pending)
	byKind := map[catalog.MismatchKind]int64{}
	for _, k := range want {
		byKind[k]++
	}
	assert.Equal(t, byKind[catalog.KindDiffering], st.Confirmed.Differing)
	assert.Equal(t, byKind[catalog.KindMissing], st.Confirmed.Missing)
	assert.Equal(t, byKind[catalog.KindExtra], st.Confirmed.Extra)
	assert.Equal(t, byKind[catalog.KindUntransformable], st.Confirmed.Untransformable)

	// Every planted difference once, confirmed with its kind; every other recorded key (one
	// the writer changed while the verifier looked) resolved.
	got := f.found(t)
	var lost, wrong, stale []string
	for k, kind := range want {
		m, ok := got[k]
		switch {
		case !ok:
			lost = append(lost, k)
		case m.Kind != kind || m.State != catalog.MismatchConfirmed:
			wrong = append(wrong, fmt.Sprintf("%s: %s %s, want %s confirmed", k, m.Kind, m.State, kind))
		}
	}
	resolved, confirmedOnce := 0, 0
	for k, m := range got {
		if _, ok := want[k]; ok {
			continue
		}
		if m.State != catalog.MismatchResolved {
			stale = append(stale, fmt.Sprintf("%s (%s, %s: %s)", k, m.Kind, m.State, m.Detail))
		}
		resolved++
		if m.ConfirmedOnce {
			confirmedOnce++
		}
	}
	for _, i := range lagging {
		m, ok := got[adapters.KeyString(userID(i))]
		if assert.True(t, ok, "lagging %s recorded", userID(i)) {
			assert.Equal(t, catalog.MismatchResolved, m.State, "lagging %s, once converged", userID(i))
		}
	}
	sort.Strings(lost)
	sort.Strings(stale)
	assert.Empty(t, lost, "planted differences not found")
	assert.Empty(t, wrong, "planted differences of the wrong kind or state")
	assert.Empty(t, stale, "differences of converged keys still open")
	t.Logf("%d keys differed on the way and were resolved (%d lagging on purpose; %d confirmed before their write converged)", resolved, len(lagging), confirmedOnce)
	f.legacyOnce(t)

	// Drift: in time order, over generations that only grow, ending with the settled state.
	drift, err := f.cat.VerifyDrift(ctx, migration, st.RunID, time.Time{})
	require.NoError(t, err)
	require.NotEmpty(t, drift)
	for i := 1; i < len(drift); i++ {
		assert.LessOrEqual(t, drift[i-1].Generation, drift[i].Generation, "drift point %d's generation", i)
	}
	lastPoint := drift[len(drift)-1]
	assert.Equal(t, int64(len(want)), lastPoint.Confirmed, "the last drift point's confirmed mismatches")
	assert.Zero(t, lastPoint.Pending, "the last drift point's pending mismatches")
	assert.Equal(t, st.Compared, lastPoint.Compared)
	assert.LessOrEqual(t, lastPoint.Generation, st.Generation)
	g := f.verificationGate(t)
	assert.False(t, g.OK)
	assert.Contains(t, g.Detail, fmt.Sprintf("%d confirmed mismatches outstanding", len(want)))
	f.assertReferenceFinds(t, want)
}
