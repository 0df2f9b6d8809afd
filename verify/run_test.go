package verify_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/verify"
)

// verificationGate runs the cutover gates and returns the verification gate's result.
func (f *fixture) verificationGate(t *testing.T) flags.GateResult {
	t.Helper()
	ctx := context.Background()
	_, err := f.cat.RegisterSpec(ctx, migration, f.spec.Version, "users-v2", "verify_test")
	require.NoError(t, err)
	results, err := flags.NewManager(f.cat).CheckGates(ctx, migration)
	require.NoError(t, err)
	for _, r := range results {
		if r.Gate == flags.GateVerification {
			return r
		}
	}
	t.Fatalf("no %s gate in %v", flags.GateVerification, results)
	return flags.GateResult{}
}

// assertGateReads checks that the gate's view of the saved summary has sum's values.
func assertGateReads(t *testing.T, sum catalog.VerifySummary, gate flags.VerifySummary) {
	t.Helper()
	assert.Equal(t, flags.VerifySummary{
		Keys: sum.Keys, Mismatches: sum.Mismatches, Clean: sum.Clean, Started: sum.Started, Finished: sum.Finished,
	}, gate)
}

func TestCleanRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		docs int
		rate float64
	}{
		{"empty stores", 0, 0},
		{"converged", 50, 0},
		{"converged, rate limited", 30, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.seed(t, tc.docs)
			cfg := f.config()
			cfg.Rate = tc.rate
			sum, err := verify.Run(context.Background(), cfg)
			require.NoError(t, err)
			assert.True(t, sum.Clean, "%+v", sum)
			assert.Equal(t, int64(tc.docs), sum.Keys)
			assert.Zero(t, sum.Mismatches)
			assert.Zero(t, sum.Errors)
			assert.Zero(t, sum.Rechecked)
			assert.Empty(t, sum.Samples)
			assert.Empty(t, sum.Aborted)
			assert.False(t, sum.Finished.Before(sum.Started))

			saved, gate := f.newestSummary(t)
			assert.Equal(t, sum, saved)
			assertGateReads(t, sum, gate)
			g := f.verificationGate(t)
			assert.True(t, g.OK, g.Detail)

			mm, err := f.cat.Mismatches(context.Background(), migration, 0)
			require.NoError(t, err)
			assert.Empty(t, mm)
			if tc.docs > 0 {
				p, err := f.cat.Progress(context.Background(), migration, verify.ProgressPath)
				require.NoError(t, err)
				assert.Equal(t, int64(tc.docs), p["keys"])
			}
		})
	}
}

func TestSaveVerifySummaryDecodesAsTheGateReadsIt(t *testing.T) {
	f := newFixture(t)
	started := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	s := catalog.VerifySummary{
		Keys: 1000, Mismatches: 3, Clean: false, Started: started, Finished: started.Add(90 * time.Second),
		Missing: 1, Extra: 1, Differing: 1, Rechecked: 5, Repaired: 3, Errors: 0,
		Samples: []string{`"k": missing in the new store`},
	}
	require.NoError(t, f.cat.SaveVerifySummary(context.Background(), migration, s))
	saved, gate := f.newestSummary(t)
	assert.Equal(t, s, saved)
	assert.Equal(t, flags.VerifySummary{Keys: 1000, Mismatches: 3, Started: s.Started, Finished: s.Finished}, gate)
	assert.Equal(t, flags.ReportKindVerify, catalog.ReportKindVerify)
}

// breakSome makes one mismatch of each kind in a converged fixture of 20 users and returns
// the keys: differing, missing in new, extra in new, untransformable.
func (f *fixture) breakSome(t *testing.T) (differing, missing, extra, untransformable string) {
	t.Helper()
	ctx := context.Background()
	f.seed(t, 20)
	differing, missing, extra, untransformable = userID(3), userID(11), userID(900), userID(17)
	wrong := f.forward(t, user(3))
	wrong = setField(wrong, "profile", bson.D{{Key: "full_name", Value: "Someone Else"}, {Key: "email", Value: "user3@example.com"}})
	wrong = setField(wrong, "age", int32(21)) // the transform gives int64 21
	require.NoError(t, f.new.Upsert(ctx, wrong))
	require.NoError(t, f.new.Delete(ctx, missing))
	require.NoError(t, f.new.Upsert(ctx, f.forward(t, user(900))))
	bad := setField(user(17), "age", "forty") // convert int32 → int64 fails
	require.NoError(t, f.old.Upsert(ctx, bad))
	return differing, missing, extra, untransformable
}

func setField(d bson.D, key string, v any) bson.D {
	out := make(bson.D, 0, len(d))
	for _, e := range d {
		if e.Key == key {
			e.Value = v
		}
		out = append(out, e)
	}
	return out
}

func byKey(t *testing.T, mm []catalog.Mismatch) map[string]catalog.Mismatch {
	t.Helper()
	out := map[string]catalog.Mismatch{}
	for _, m := range mm {
		k, ok := m.Key.(string)
		require.True(t, ok, "key %v", m.Key)
		_, dup := out[k]
		require.False(t, dup, "key %s recorded twice", k)
		out[k] = m
	}
	return out
}

func TestFindsEachKindOfMismatch(t *testing.T) {
	for _, plan := range []string{verify.PlanMerge, verify.PlanJoin, verify.PlanLookup} {
		t.Run(plan, func(t *testing.T) { testFindsEachKindOfMismatch(t, plan) })
	}
}

func testFindsEachKindOfMismatch(t *testing.T, plan string) {
	f := newFixture(t)
	differing, missing, extra, untransformable := f.breakSome(t)
	cfg := f.config()
	cfg.Plan, cfg.SpillDir = plan, t.TempDir()
	sum, err := verify.Run(context.Background(), cfg)
	require.NoError(t, err)

	assert.False(t, sum.Clean)
	assert.Equal(t, int64(21), sum.Keys, "20 in old, 1 only in new")
	assert.Equal(t, int64(4), sum.Mismatches)
	assert.Equal(t, int64(1), sum.Differing)
	assert.Equal(t, int64(1), sum.Missing)
	assert.Equal(t, int64(1), sum.Extra)
	assert.Equal(t, int64(1), sum.Untransformable)
	assert.Equal(t, int64(1), sum.Errors, "the untransformable document")
	assert.Equal(t, int64(4), sum.Rechecked)
	assert.Zero(t, sum.Repaired)
	assert.Len(t, sum.Samples, 4)

	mm, err := f.cat.Mismatches(context.Background(), migration, 0)
	require.NoError(t, err)
	got := byKey(t, mm)
	require.Len(t, got, 4)
	for _, m := range mm {
		assert.Equal(t, verify.SourceVerify, m.Source)
		assert.Equal(t, migration, m.Migration)
		assert.Nil(t, m.RepairedAt)
	}
	assert.ElementsMatch(t, []string{
		`profile.full_name: want string "User 3", got string "Someone Else"`,
		`age: want int64 {"$numberLong":"21"}, got int32 {"$numberInt":"21"}`,
	}, got[differing].Diff)
	assert.Equal(t, []string{"missing in the new store"}, got[missing].Diff)
	assert.Equal(t, []string{"extra in the new store: the old store has no document with this key"}, got[extra].Diff)
	require.Len(t, got[untransformable].Diff, 1)
	assert.True(t, strings.HasPrefix(got[untransformable].Diff[0], "transform failed: "), got[untransformable].Diff[0])
	assert.Contains(t, got[untransformable].Diff[0], "age")
	p, err := f.cat.Progress(context.Background(), migration, verify.ProgressPath)
	require.NoError(t, err)
	assert.Equal(t, map[string]int64{"keys": 21, "mismatches": 4, "errors": 1}, p)

	saved, gate := f.newestSummary(t)
	assert.Equal(t, sum, saved)
	assertGateReads(t, sum, gate)
	g := f.verificationGate(t)
	assert.False(t, g.OK)
	assert.Contains(t, g.Detail, "4 confirmed mismatches outstanding (missing 1, extra 1, differing 1, untransformable 1, invariant broken 0, index missing 0)")
}

func TestRepair(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	differing, missing, extra, untransformable := f.breakSome(t)
	var mu sync.Mutex
	var repaired []string
	cfg := f.config()
	cfg.Repair = func(ctx context.Context, key adapters.Key) error {
		mu.Lock()
		repaired = append(repaired, key.(string))
		mu.Unlock()
		return f.convergeForward(ctx, key)
	}
	sum, err := verify.Run(ctx, cfg)
	require.NoError(t, err)
	assert.False(t, sum.Clean, "a run that repaired mismatches found them: it is not clean")
	assert.Equal(t, int64(4), sum.Mismatches)
	assert.Equal(t, int64(3), sum.Repaired)
	assert.Zero(t, sum.RepairFailed)
	assert.ElementsMatch(t, []string{differing, missing, extra}, repaired, "untransformable documents are not repaired")

	mm, err := f.cat.Mismatches(ctx, migration, 0)
	require.NoError(t, err)
	for k, m := range byKey(t, mm) {
		if k == untransformable {
			assert.Nil(t, m.RepairedAt, k)
		} else {
			assert.NotNil(t, m.RepairedAt, k)
		}
	}

	// What is left is the document the spec cannot transform; fixed at the source (and
	// converged), the next run is clean.
	require.NoError(t, f.write(untransformable, user(17)))
	repaired = nil
	sum, err = verify.Run(ctx, cfg)
	require.NoError(t, err)
	assert.True(t, sum.Clean, "%+v", sum)
	assert.Equal(t, int64(20), sum.Keys)
	assert.Empty(t, repaired)
	g := f.verificationGate(t)
	assert.True(t, g.OK, g.Detail)
}

func TestRepairFailureIsCounted(t *testing.T) {
	f := newFixture(t)
	f.seed(t, 10)
	require.NoError(t, f.new.Delete(context.Background(), userID(4)))
	cfg := f.config()
	cfg.Repair = func(context.Context, adapters.Key) error { return errors.New("new store unreachable") }
	sum, err := verify.Run(context.Background(), cfg)
	require.NoError(t, err)
	assert.Equal(t, int64(1), sum.Mismatches)
	assert.Equal(t, int64(1), sum.RepairFailed)
	assert.Zero(t, sum.Repaired)
	mm, err := f.cat.Mismatches(context.Background(), migration, 0)
	require.NoError(t, err)
	require.Len(t, mm, 1)
	assert.Nil(t, mm[0].RepairedAt)
}

// TestConvergingWriterMakesNoFalseMismatches writes while a run goes on, at the worst moment:
// after a scan read a batch from one store and before the run reads those keys from the
// other. The writer converges (old first, then new, as the proxy does in the dual phase), so
// every difference the first comparison sees is gone on the recheck. One worker, so that no
// write lands between the recheck's own reads: a writer caught half-way there is the one case
// a recheck cannot tell from a mismatch (see the package doc).
// TestConvergingWriterMakesNoFalseMismatches: writes converged (old, then new) between one
// store's read of a key and the other's make differences at first sight, and no mismatch.
// The look-up's window is a batch's BatchGet; the join's is the whole pass.
func TestConvergingWriterMakesNoFalseMismatches(t *testing.T) {
	for _, plan := range []string{verify.PlanLookup, verify.PlanJoin} {
		t.Run(plan, func(t *testing.T) { testConvergingWriter(t, plan) })
	}
}

func testConvergingWriter(t *testing.T, plan string) {
	f := newFixture(t)
	f.seed(t, 40)
	next := 1000 // ids of the users the writer inserts
	var writes int
	cfg := f.config()
	cfg.Concurrency = 1
	cfg.Plan, cfg.SpillDir = plan, t.TempDir()
	verify.SetAfterRead(&cfg, func(p verify.Pass, keys []adapters.Key) {
		if len(keys) < 2 {
			return
		}
		switch p {
		case verify.PassOld:
			// The batch just read holds keys[0]'s and keys[1]'s old versions: update the one,
			// delete the other, and insert a user the scan may or may not reach.
			updated := setField(user(idOf(t, keys[0])), "name", "Renamed During The Run")
			assert.NoError(t, f.write(keys[0].(string), updated))
			assert.NoError(t, f.write(keys[1].(string), nil))
			assert.NoError(t, f.write(userID(next), user(next)))
			next++
			writes += 3
		case verify.PassNew:
			// The new store's scan read keys[0]: delete it from both stores.
			assert.NoError(t, f.write(keys[0].(string), nil))
			writes++
		}
	})
	sum, err := verify.Run(context.Background(), cfg)
	require.NoError(t, err)
	assert.True(t, sum.Clean, "%+v", sum)
	assert.Zero(t, sum.Mismatches, "%v", sum.Samples)
	assert.Positive(t, writes)
	if plan == verify.PlanLookup {
		assert.Positive(t, sum.Rechecked, "the writes made differences at first sight")
	} // the join reads a key whose digests differ again at the end of the pass: no difference left by then
	mm, err := f.cat.Mismatches(context.Background(), migration, 0)
	require.NoError(t, err)
	assert.Empty(t, mm)
}

// TestBreakingWriteDuringTheRunIsCaught is the control of the test above: the same moment,
// but the write puts a wrong document in new, so the recheck confirms the difference.
func TestBreakingWriteDuringTheRunIsCaught(t *testing.T) {
	f := newFixture(t)
	f.seed(t, 10)
	cfg := f.config()
	cfg.Batch = 100
	cfg.Plan = verify.PlanLookup  // the new store is read after the hook, as the look-up does
	cfg.Settle = time.Millisecond // the wait changes nothing here: the wrong document stays
	var once sync.Once
	var changed string
	verify.SetAfterRead(&cfg, func(p verify.Pass, keys []adapters.Key) {
		if p != verify.PassOld || len(keys) == 0 {
			return
		}
		once.Do(func() {
			changed = keys[0].(string)
			wrong, err := f.spec.Forward(user(idOf(t, keys[0])))
			assert.NoError(t, err)
			wrong = setField(wrong, "schema_version", int64(1))
			assert.NoError(t, f.new.Upsert(context.Background(), wrong))
		})
	})
	sum, err := verify.Run(context.Background(), cfg)
	require.NoError(t, err)
	assert.False(t, sum.Clean)
	assert.Equal(t, int64(1), sum.Differing)
	mm, err := f.cat.Mismatches(context.Background(), migration, 0)
	require.NoError(t, err)
	require.Len(t, mm, 1)
	assert.Equal(t, changed, mm[0].Key)
	assert.Equal(t, []string{`schema_version: want int32 {"$numberInt":"2"}, got int64 {"$numberLong":"1"}`}, mm[0].Diff)
}

func idOf(t *testing.T, key adapters.Key) int {
	t.Helper()
	s, _ := key.(string)
	i, err := strconv.Atoi(strings.TrimPrefix(s, "user-"))
	assert.NoError(t, err, "key %v", key)
	return i
}

func TestCancelledRunIsSavedNotClean(t *testing.T) {
	for _, tc := range []struct {
		name   string
		during bool // cancel after the first batch was read, rather than before the run
	}{
		{"cancelled before", false},
		{"cancelled during", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.seed(t, 40)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cfg := f.config()
			if tc.during {
				verify.SetAfterRead(&cfg, func(verify.Pass, []adapters.Key) { cancel() })
			} else {
				cancel()
			}
			sum, err := verify.Run(ctx, cfg)
			require.ErrorIs(t, err, context.Canceled)
			assert.False(t, sum.Clean)
			assert.NotEmpty(t, sum.Aborted)
			assert.False(t, sum.Finished.IsZero())
			assert.Less(t, sum.Keys, int64(40))

			saved, gate := f.newestSummary(t)
			assert.Equal(t, sum, saved)
			assertGateReads(t, sum, gate)
			g := f.verificationGate(t)
			assert.False(t, g.OK, g.Detail)
		})
	}
}

func TestInvalidConfigSavesNothing(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name   string
		change func(*verify.Config)
	}{
		{"no migration", func(c *verify.Config) { c.Migration = "" }},
		{"no old", func(c *verify.Config) { c.Old = nil }},
		{"no new", func(c *verify.Config) { c.New = nil }},
		{"no forward", func(c *verify.Config) { c.Forward = nil }},
		{"no catalog", func(c *verify.Config) { c.Catalog = nil }},
		{"negative rate", func(c *verify.Config) { c.Rate = -1 }},
		{"unknown plan", func(c *verify.Config) { c.Plan = "hash" }},
		{"negative buckets", func(c *verify.Config) { c.Buckets = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := f.config()
			tc.change(&cfg)
			_, err := verify.Run(context.Background(), cfg)
			require.ErrorIs(t, err, verify.ErrInvalidConfig)
		})
	}
	reports, err := f.cat.Reports(context.Background(), migration, catalog.ReportKindVerify, 0)
	require.NoError(t, err)
	assert.Empty(t, reports)
}

// TestMismatchLogsNoValuesAboveDebug: a mismatch's warning names the differing paths, never the
// documents' values, which are user data; the difference itself is logged at debug only.
func TestMismatchLogsNoValuesAboveDebug(t *testing.T) {
	f := newFixture(t)
	f.breakSome(t)
	info, debug := testenv.NewLogRecorder(slog.LevelInfo), testenv.NewLogRecorder(slog.LevelDebug)
	cfg := f.config()
	cfg.Logger = slog.New(slog.NewMultiHandler(info, debug))
	_, err := verify.Run(context.Background(), cfg)
	require.NoError(t, err)

	rec, ok := info.Find("verification mismatch")
	require.True(t, ok, "a mismatch is logged at warn")
	var warned []string
	for _, r := range info.Records() {
		text := testenv.LogText(r)
		assert.NotContains(t, text, "Someone Else", "a value in a record at info or above: %s", text)
		assert.NotContains(t, text, "forty", "a value in a record at info or above: %s", text)
		if r.Message == "verification mismatch" {
			warned = append(warned, text)
		}
	}
	assert.Contains(t, strings.Join(warned, ""), "profile.full_name", "the warning names the differing path")
	paths, ok := testenv.LogAttr(rec, "paths")
	require.True(t, ok)
	assert.NotEmpty(t, paths.String())
	var atDebug string
	for _, r := range debug.Records() {
		if r.Level == slog.LevelDebug {
			atDebug += testenv.LogText(r)
		}
	}
	assert.Contains(t, atDebug, "Someone Else", "the difference is logged at debug")
}
