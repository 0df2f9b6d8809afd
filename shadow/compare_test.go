package shadow_test

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
)

type comparerFixture struct {
	*fixture
	c                   *shadow.Comparer
	reg                 *prometheus.Registry
	matched, mismatched atomic.Int64
}

func newComparer(t *testing.T, f *fixture, workers, depth int) *comparerFixture {
	return newSettlingComparer(t, f, workers, depth, 0)
}

func newSettlingComparer(t *testing.T, f *fixture, workers, depth int, settle time.Duration) *comparerFixture {
	t.Helper()
	cf := &comparerFixture{fixture: f, reg: prometheus.NewRegistry()}
	var err error
	cf.c, err = shadow.NewComparer(shadow.ComparerConfig{
		Engine: f.engine, Mismatches: f.cat, Workers: workers, Depth: depth, Settle: settle, Metrics: shadow.NewMetrics(cf.reg),
		OnCompared: func(mismatch bool) {
			if mismatch {
				cf.mismatched.Add(1)
			} else {
				cf.matched.Add(1)
			}
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cf.c.Close(context.Background()) })
	return cf
}

func (cf *comparerFixture) reads(t *testing.T, result string) float64 {
	return metricValue(t, cf.reg, "tandem_shadow_reads_total", map[string]string{"result": result})
}

func (cf *comparerFixture) close(t *testing.T) {
	t.Helper()
	require.NoError(t, cf.c.Close(context.Background()))
}

// readOld returns key's document as the proxy would have seen it in a reply from old.
func (f *fixture) readOld(t *testing.T, key string) bson.Raw {
	t.Helper()
	d, err := f.old.Get(context.Background(), key)
	require.NoError(t, err)
	raw, err := bson.Marshal(d)
	require.NoError(t, err)
	return raw
}

// seedConverged writes a user to old and converges it to new.
func (f *fixture) seedConverged(t *testing.T, key string, age int32) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, f.old.Upsert(ctx, user(key, age)))
	_, err := f.engine.Converge(ctx, key, shadow.Forward)
	require.NoError(t, err)
}

func TestComparerMatch(t *testing.T) {
	f := newFixture(t, "fail")
	cf := newComparer(t, f, 0, 0)
	f.seedConverged(t, "m1", 30)
	f.seedConverged(t, "m2", 31)
	raws := []bson.Raw{f.readOld(t, "m1"), f.readOld(t, "m2")}
	require.True(t, cf.c.Submit(raws))
	for _, r := range raws {
		clear(r) // the proxy reuses its reply buffer at once
	}
	cf.close(t)

	assert.Equal(t, 2.0, cf.reads(t, "match"))
	assert.Zero(t, cf.reads(t, "mismatch")+cf.reads(t, "error")+cf.reads(t, "dropped"))
	assert.Equal(t, int64(2), cf.matched.Load())
	ms, err := f.cat.Mismatches(context.Background(), "users-test", 0)
	require.NoError(t, err)
	assert.Empty(t, ms)
	assert.False(t, cf.c.Submit(raws), "closed")
}

func TestComparerMismatchIsRecordedAndRepaired(t *testing.T) {
	for _, settle := range []time.Duration{0, time.Millisecond} {
		t.Run("settle "+settle.String(), func(t *testing.T) { testComparerMismatch(t, settle) })
	}
}

func testComparerMismatch(t *testing.T, settle time.Duration) {
	ctx := context.Background()
	f := newFixture(t, "fail")
	cf := newSettlingComparer(t, f, 0, 0, settle)
	// c1: new holds a wrong document; c2: new lacks the document.
	f.seedConverged(t, "c1", 30)
	require.NoError(t, f.new.Upsert(ctx, bson.D{
		{Key: "_id", Value: "c1"}, {Key: "profile", Value: bson.D{{Key: "name", Value: "WRONG"}}},
		{Key: "age", Value: int64(30)}, {Key: "v", Value: int32(2)}, {Key: "extra", Value: true},
	}))
	require.NoError(t, f.old.Upsert(ctx, user("c2", 40)))
	require.True(t, cf.c.Submit([]bson.Raw{f.readOld(t, "c1"), f.readOld(t, "c2")}))
	cf.close(t)

	assert.Equal(t, 2.0, cf.reads(t, "mismatch"))
	assert.Equal(t, int64(2), cf.mismatched.Load())
	assert.Equal(t, 2.0, metricValue(t, cf.reg, "tandem_shadow_read_repairs_total", map[string]string{"result": "repaired"}))
	ms, err := f.cat.Mismatches(ctx, "users-test", 0)
	require.NoError(t, err)
	require.Len(t, ms, 2)
	byKey := map[any][]string{}
	for _, m := range ms {
		assert.Equal(t, shadow.SourceShadowRead, m.Source)
		assert.NotNil(t, m.RepairedAt, "%v marked repaired", m.Key)
		byKey[m.Key] = m.Diff
	}
	diff := strings.Join(byKey["c1"], "\n")
	assert.Contains(t, diff, `profile.name: want string "N c1", got string "WRONG"`)
	assert.Contains(t, diff, "extra: unexpected")
	assert.Equal(t, []string{"document missing from the new store"}, byKey["c2"])
	f.expectTarget(t, "c1")
	f.expectTarget(t, "c2")
}

func TestComparerRacingWriteIsNoMismatch(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "fail")
	cf := newComparer(t, f, 0, 0)
	// The proxy captured r1 and r2; then r1 was updated and r2 deleted, and both converged,
	// before the comparer got to them.
	f.seedConverged(t, "r1", 30)
	f.seedConverged(t, "r2", 30)
	stale := []bson.Raw{f.readOld(t, "r1"), f.readOld(t, "r2")}
	require.NoError(t, f.old.Upsert(ctx, user("r1", int32(31))))
	require.NoError(t, f.old.Delete(ctx, "r2"))
	for _, k := range []string{"r1", "r2"} {
		_, err := f.engine.Converge(ctx, k, shadow.Forward)
		require.NoError(t, err)
	}
	require.True(t, cf.c.Submit(stale))
	cf.close(t)

	assert.Equal(t, 2.0, cf.reads(t, "match"))
	assert.Zero(t, cf.reads(t, "mismatch"))
	ms, err := f.cat.Mismatches(ctx, "users-test", 0)
	require.NoError(t, err)
	assert.Empty(t, ms)
}

func TestComparerDropsWhenFull(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "fail")
	cf := newComparer(t, f, 1, 1)
	// The one worker blocks on the recheck of a mismatching key whose lock the test holds.
	f.seedConverged(t, "h0", 1)
	require.NoError(t, f.new.Delete(ctx, "h0"))
	var others []bson.Raw
	for _, k := range []string{"h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8", "h9", "h10"} {
		f.seedConverged(t, k, 2) // before HoldKey: a key may share h0's stripe
		others = append(others, f.readOld(t, k))
	}
	release := shadow.HoldKey(f.engine, "h0")
	require.True(t, cf.c.Submit([]bson.Raw{f.readOld(t, "h0")}))
	refused := 0
	for _, raw := range others {
		if !cf.c.Submit([]bson.Raw{raw}) {
			refused++
		}
	}
	release()
	cf.close(t)

	assert.GreaterOrEqual(t, refused, 9, "at most one document fits behind the blocked one")
	assert.Equal(t, float64(refused), cf.reads(t, "dropped"))
	assert.Equal(t, 1.0, cf.reads(t, "mismatch"))
	assert.Equal(t, float64(10-refused), cf.reads(t, "match"))
	f.expectTarget(t, "h0")
}

func TestComparerTransformErrorIsNoMismatch(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "fail")
	cf := newComparer(t, f, 0, 0)
	require.NoError(t, f.old.Upsert(ctx, user("t1", "thirty")))
	notADoc := bson.Raw{1, 2, 3}
	require.True(t, cf.c.Submit([]bson.Raw{f.readOld(t, "t1"), notADoc}))
	cf.close(t)

	assert.Equal(t, 2.0, cf.reads(t, "error"))
	assert.Zero(t, cf.reads(t, "mismatch")+cf.reads(t, "match"))
	assert.Zero(t, cf.matched.Load()+cf.mismatched.Load())
	ms, err := f.cat.Mismatches(ctx, "users-test", 0)
	require.NoError(t, err)
	assert.Empty(t, ms)
}

func TestReadNew(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "fail")
	spec, err := transform.Load("../examples/users-v2.yaml")
	require.NoError(t, err)
	e, err := shadow.NewEngine(shadow.Config{
		Migration: "users-v2", SpecVersion: spec.Version, Old: f.old, New: f.new,
		Forward: spec.Forward, Reverse: spec.Reverse, DeadLetters: f.cat,
	})
	require.NoError(t, err)
	created := bson.NewDateTimeFromTime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	olds := map[string]bson.D{}
	var keys []adapters.Key
	for _, k := range []string{"user-1", "user-2", "user-3"} {
		d := bson.D{{Key: "_id", Value: k}, {Key: "name", Value: "User " + k}, {Key: "email", Value: k + "@example.com"},
			{Key: "age", Value: int32(len(olds) + 18)}, {Key: "created", Value: created}}
		require.NoError(t, f.old.Upsert(ctx, d))
		olds[k] = d
		keys = append(keys, k)
	}
	_, err = e.ConvergeBatch(ctx, keys, shadow.Forward)
	require.NoError(t, err)
	v2, err := f.new.Get(ctx, "user-1")
	require.NoError(t, err)
	_, reshaped := lookup(v2, "profile")
	require.True(t, reshaped, "new holds the v2 shape: %v", v2)

	got, err := e.ReadNew(ctx, []adapters.Key{"user-3", "nobody", "user-1", "user-3"})
	require.NoError(t, err)
	require.Len(t, got, 2)
	for i, k := range []string{"user-3", "user-1"} {
		assert.True(t, transform.Equal(olds[k], got[i]), "%s: %v", k, transform.Diff(olds[k], got[i]))
		assert.Equal(t, "_id", got[i][0].Key)
	}
	none, err := e.ReadNew(ctx, []adapters.Key{"nobody"})
	require.NoError(t, err)
	assert.Empty(t, none)

	// A document the reverse transform rejects names its key.
	require.NoError(t, f.new.Upsert(ctx, bson.D{{Key: "_id", Value: "user-9"}, {Key: "age", Value: int64(1)},
		{Key: "created", Value: "not a date"}, {Key: "profile", Value: bson.D{{Key: "full_name", Value: "x"}, {Key: "email", Value: "x@y"}}},
		{Key: "email_domain", Value: "y"}, {Key: "schema_version", Value: int32(2)}}))
	_, err = e.ReadNew(ctx, []adapters.Key{"user-1", "user-9"})
	require.ErrorIs(t, err, transform.ErrConvert)
	assert.Contains(t, err.Error(), `"user-9"`)

	forwardOnly, err := shadow.NewEngine(shadow.Config{
		Migration: "users-v2", SpecVersion: spec.Version, Old: f.old, New: f.new, Forward: spec.Forward, DeadLetters: f.cat,
	})
	require.NoError(t, err)
	_, err = forwardOnly.ReadNew(ctx, keys)
	assert.ErrorIs(t, err, shadow.ErrNoReverse)
}

// TestComparerMismatchLogsNoValuesAboveDebug: the warning names the differing paths; the
// values (user data) are logged at debug only.
func TestComparerMismatchLogsNoValuesAboveDebug(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "fail")
	info, debug := testenv.NewLogRecorder(slog.LevelInfo), testenv.NewLogRecorder(slog.LevelDebug)
	c, err := shadow.NewComparer(shadow.ComparerConfig{
		Engine: f.engine, Mismatches: f.cat, Metrics: shadow.NewMetrics(prometheus.NewRegistry()),
		Log: slog.New(slog.NewMultiHandler(info, debug)),
	})
	require.NoError(t, err)
	f.seedConverged(t, "c1", 30)
	require.NoError(t, f.new.Upsert(ctx, bson.D{
		{Key: "_id", Value: "c1"}, {Key: "profile", Value: bson.D{{Key: "name", Value: "WRONG-VALUE"}}},
		{Key: "age", Value: int64(30)}, {Key: "v", Value: int32(2)},
	}))
	require.True(t, c.Submit([]bson.Raw{f.readOld(t, "c1")}))
	require.NoError(t, c.Close(ctx))

	_, ok := info.Find("shadow read mismatch")
	require.True(t, ok, "the mismatch is logged at warn")
	for _, r := range info.Records() {
		text := testenv.LogText(r)
		assert.NotContains(t, text, "WRONG-VALUE", "a value at info or above: %s", text)
		if r.Message == "shadow read mismatch" {
			assert.Contains(t, text, "profile.name")
		}
	}
	var atDebug string
	for _, r := range debug.Records() {
		if r.Level == slog.LevelDebug {
			atDebug += testenv.LogText(r)
		}
	}
	assert.Contains(t, atDebug, "WRONG-VALUE")
}
