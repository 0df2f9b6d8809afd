package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
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
	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/verify"
)

// convergeSeedsDefault is how many seeds `make test` runs; `make soak` sets
// TANDEM_CONVERGE_SEEDS=1000.
const convergeSeedsDefault = 50

// convergeKeys is the key space of a seed: few enough that writes, kills and the copy meet on
// the same keys.
const convergeKeys = 40

// convergeMaxFailures ends the test after this many failed seeds: a real bug fails most seeds,
// and each failure waits for its bounds.
const convergeMaxFailures = 3

// TestConvergenceUnderKills is the randomized convergence test. Each seed is one migration on
// fresh collections of one mongo-java-server (change streams): a history written straight into
// old, `tandem proxy` in phase shadow in this process, and two child processes, the backfill and
// the forward tailer, while two writers write random inserts, updates, replaces, deletes,
// findOneAndUpdates, updateManys and deleteManys, one through the proxy and one straight into old.
// At random points one or two of the children are SIGKILLed and started again. At the end the
// backfill finishes, the tailer drains the stream, and a full verification must be clean and a
// full comparison of transform(old) with new must find nothing lost, extra or different.
//
// TANDEM_CONVERGE_SEEDS sets how many seeds run (1, 2, …); TANDEM_CONVERGE_SEED=N runs seed N
// alone (the same writes and kill points; how they interleave with the children differs).
func TestConvergenceUnderKills(t *testing.T) {
	seeds := convergeSeeds(t)
	mj := testenv.StartMongoJavaT(t, testenv.MongoJavaOptions{})
	direct, err := mongo.Connect(options.Client().ApplyURI(mj.URI()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = direct.Disconnect(context.Background()) })
	env := &convergeEnv{uri: mj.URI(), direct: direct, token: tokenFile(t)}
	began := time.Now()
	failed := 0
	for _, seed := range seeds {
		if !t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { env.runSeed(t, seed) }) {
			if failed++; failed == convergeMaxFailures {
				t.Fatalf("%d seeds failed: stopping (replay one with TANDEM_CONVERGE_SEED=N)", failed)
			}
		}
	}
	t.Logf("%d seeds in %s; kills of a running backfill %d, of a running tailer %d", len(seeds),
		time.Since(began).Round(time.Millisecond), env.backfillKills.Load(), env.tailerKills.Load())
	if len(seeds) >= 10 {
		// Over many seeds both kinds of kill must have hit a live process, or the test proved little.
		assert.Positive(t, env.backfillKills.Load(), "no seed killed a running backfill")
		assert.Positive(t, env.tailerKills.Load(), "no seed killed a running tailer")
	}
}

// convergeSeeds are the seeds to run: TANDEM_CONVERGE_SEED alone, or 1..TANDEM_CONVERGE_SEEDS.
func convergeSeeds(t *testing.T) []uint64 {
	if s := os.Getenv("TANDEM_CONVERGE_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "TANDEM_CONVERGE_SEED=%q: want a seed number", s)
		return []uint64{seed}
	}
	n := convergeSeedsDefault
	if s := os.Getenv("TANDEM_CONVERGE_SEEDS"); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		require.NoError(t, err, "TANDEM_CONVERGE_SEEDS=%q: want a number of seeds", s)
		require.Positive(t, n, "TANDEM_CONVERGE_SEEDS=%q: want 1 or more", s)
	}
	seeds := make([]uint64, n)
	for i := range seeds {
		seeds[i] = uint64(i + 1)
	}
	return seeds
}

// convergeEnv is what the seeds share: the server, a client on it, the admin token, and the
// counts of kills that hit a running child.
type convergeEnv struct {
	uri           string
	direct        *mongo.Client
	token         string
	backfillKills atomic.Int64
	tailerKills   atomic.Int64
	seeds         int       // seeds run so far
	trimmedAt     time.Time // when the oplog was last trimmed
}

// convergeSeed is one seed's run.
type convergeSeed struct {
	t      *testing.T
	seed   uint64
	env    *convergeEnv
	spec   string // the spec file
	catDB  string
	cat    *catalog.Catalog
	rate   float64
	old    *mongo.Collection
	writes atomic.Int64
	errMu  sync.Mutex
	errs   []string
	began  time.Time
	evMu   sync.Mutex
	events []string                  // what happened when (event)
	kids   map[string]*testenv.Child // the running backfill and tailer
	base   map[string]int64          // what each had done when it started (done)
}

func (s *convergeSeed) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("seed %d: %s", s.seed, fmt.Sprintf(format, args...))
}

func (env *convergeEnv) runSeed(t *testing.T, seed uint64) {
	began := time.Now()
	rng := rand.New(rand.NewPCG(seed, 0x636f6e7665726765))
	db := fmt.Sprintf("conv_%d", seed)
	s := &convergeSeed{t: t, seed: seed, env: env, catDB: db + "_meta", kids: map[string]*testenv.Child{}, base: map[string]int64{},
		rate: float64(20 + rng.IntN(40)), old: env.direct.Database(db).Collection("users"), began: began}
	t.Cleanup(func() { s.cleanup(db) })
	t.Cleanup(func() {
		if t.Failed() {
			s.evMu.Lock()
			t.Logf("seed %d: what happened:\n%s", seed, strings.Join(s.events, "\n"))
			s.evMu.Unlock()
			for role, c := range s.kids {
				t.Logf("seed %d: the last %s process's output:\n%s", seed, role, c.Tail(4000))
			}
			t.Logf("seed %d failed; replay it with TANDEM_CONVERGE_SEED=%d go test -race -run 'TestConvergenceUnderKills' ./cmd/tandem", seed, seed)
		}
	})
	ctx := context.Background()
	s.spec = e2eSpec(t, env.uri, env.uri, db)
	spec, err := loadSpecFile(s.spec, storeOverrides{})
	require.NoError(t, err)

	// The history, written before anything of tandem runs.
	history := 10 + rng.IntN(25)
	for range history {
		if _, err := s.old.InsertOne(ctx, e2eUser(convergeKey(rng), rng.IntN(1000))); err != nil && !mongo.IsDuplicateKeyError(err) {
			s.fatalf("writing the history: %v", err)
		}
	}
	proxyURI, adminURL, _, stopProxy := runCommand(t, "proxy", "--upstream", env.uri, "--spec", s.spec, "--catalog-db", s.catDB,
		"--journal-embedded", "--journal-partitions", "2", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
		"--admin-token-file", env.token, "--flags-poll", "20ms", "--shadow-workers", "2")
	api, err := admin.NewClient(adminURL, e2eToken, nil)
	require.NoError(t, err)
	if _, err := api.Advance(ctx, spec.Name, flags.PhaseShadow, fmt.Sprintf("convergence seed %d", seed)); err != nil {
		s.fatalf("advancing to shadow: %v", err)
	}
	cat, err := catalog.Open(ctx, env.direct, catalog.WithDatabase(s.catDB))
	require.NoError(t, err)
	s.cat = cat
	viaProxy, err := mongo.Connect(options.Client().ApplyURI(proxyURI))
	require.NoError(t, err)
	defer func() { _ = viaProxy.Disconnect(ctx) }()

	// The tailer's start position, before the backfill reads anything (tandem run's order).
	env.afterTrim()
	s.prepareTailer(ctx)
	marks := []time.Duration{time.Since(began)}
	s.start("backfill")
	s.start("tailer")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	stopWriters := sync.OnceFunc(func() { close(stop) })
	t.Cleanup(func() { stopWriters(); wg.Wait() }) // a failure below leaves no writer behind
	for i, c := range []*mongo.Client{viaProxy, env.direct} {
		w := rand.New(rand.NewPCG(rng.Uint64(), uint64(i)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.write(c.Database(db).Collection("users"), w, stop, i == 0)
		}()
	}
	kills := s.killAtRandom(rng, 1+rng.IntN(2))
	// The writes go on while the restarted processes work again: until the backfill has
	// copied again (or is done), then a random moment more.
	s.waitFor("backfill", 30*time.Second)
	time.Sleep(time.Duration(50+rng.IntN(350)) * time.Millisecond)
	stopWriters()
	wg.Wait()
	marks = append(marks, time.Since(began))
	if errs := s.writeErrors(); len(errs) > 0 {
		s.fatalf("%d writes failed, the first: %s", len(errs), errs[0])
	}

	// The end: the backfill finishes, the proxy drains its converges, the tailer drains the stream.
	if err := s.kids["backfill"].Wait(3 * time.Minute); err != nil {
		s.fatalf("the last backfill process: %v\n%s", err, s.kids["backfill"].Tail(6000))
	}
	marks = append(marks, time.Since(began))
	require.NoError(t, stopProxy(), "seed %d: the proxy stops cleanly", seed)
	require.Eventually(t, func() bool { return s.applied(ctx, cat) > 0 }, time.Minute, 20*time.Millisecond,
		"seed %d: the tailer applied nothing", seed)
	s.kids["tailer"].CloseStdin()
	if err := s.kids["tailer"].Wait(3 * time.Minute); err != nil {
		s.fatalf("the tailer's drain: %v\n%s", err, s.kids["tailer"].Tail(6000))
	}

	marks = append(marks, time.Since(began))
	newColl := env.direct.Database(db).Collection("users_v2")
	sum, err := verify.Run(ctx, verify.Config{Migration: spec.Name, SpecVersion: spec.Version,
		Old: adapters.NewMongoStore(s.old), New: adapters.NewMongoStore(newColl), Forward: spec.Forward, Catalog: cat})
	require.NoError(t, err, "seed %d: verification", seed)
	assert.True(t, sum.Clean, "seed %d: verification is clean: %+v", seed, sum)
	n := expectStoresAgree(t, fmt.Sprintf("seed %d", seed), spec, s.old, newColl)
	assert.Equal(t, int64(n), sum.Keys, "seed %d: verification compared every key of old", seed)
	p, err := backfill.Status(ctx, cat, spec.Name)
	require.NoError(t, err, "seed %d: the backfill's state", seed)
	assert.Equal(t, backfill.StateDone, p.State, "seed %d", seed)
	marks = append(marks, time.Since(began))
	t.Logf("seed %d: %d history, %d writes, %s; %d documents at the end, backfill copied %d, tailer applied %d; ready, written, copied, drained, verified at %v",
		seed, history, s.writes.Load(), kills, n, p.Copied, s.applied(ctx, cat), marks)
}

// convergeKey is one of the seed's keys, drawn from rng.
func convergeKey(rng *rand.Rand) string { return fmt.Sprintf("k%02d", rng.IntN(convergeKeys)) }

// prepareTailer saves the forward tailer's start position in the catalog, as tandem run does
// before any path runs.
func (s *convergeSeed) prepareTailer(ctx context.Context) {
	s.t.Helper()
	log := slog.New(slog.DiscardHandler)
	run, err := openConvergeRun(ctx, s.spec, s.catDB, s.rate, log)
	require.NoError(s.t, err, "seed %d", s.seed)
	defer run.close()
	engine, err := convergeEngine(run.spec, run.cfg.Old, run.cfg.New, run.cfg.Catalog, log)
	require.NoError(s.t, err, "seed %d", s.seed)
	tl, err := convergeTailer(run, engine, false, log)
	require.NoError(s.t, err, "seed %d", s.seed)
	_, err = tl.Prepare(ctx)
	require.NoError(s.t, err, "seed %d: the tailer's start position", s.seed)
}

// start starts the child process of role (backfill or tailer).
func (s *convergeSeed) start(role string) {
	s.t.Helper()
	c, err := testenv.StartChild("TANDEM_CONVERGE_CHILD="+role, "TANDEM_CONVERGE_SPEC="+s.spec,
		"TANDEM_CONVERGE_CATALOG_DB="+s.catDB, "TANDEM_CONVERGE_RATE="+strconv.FormatFloat(s.rate, 'f', -1, 64))
	require.NoError(s.t, err, "seed %d", s.seed)
	s.t.Cleanup(c.Kill)
	s.kids[role] = c
	s.event("%s started: pid %d", role, c.PID())
	s.base[role] = s.done(role)
}

// killAtRandom SIGKILLs a child kills times and starts it again each time; it returns what it
// did. A quarter of the kills hit a random moment of a process's first 600 ms (its start-up,
// the plan, the wait for the dead one's leases), the others a random moment up to 300 ms after
// it has done something (copied a batch, applied a change). The backfill is chosen only while it
// runs: once it is done, the tailer is killed instead.
func (s *convergeSeed) killAtRandom(rng *rand.Rand, kills int) string {
	s.t.Helper()
	var did []string
	for range kills {
		role := "tailer"
		if rng.IntN(2) == 0 {
			role = "backfill"
		}
		early, delay := rng.IntN(4) == 0, rng.IntN(300)
		if early {
			delay = rng.IntN(600)
		} else if !s.waitFor(role, 30*time.Second) {
			s.t.Logf("seed %d: the %s did nothing for 30 s; killed anyway (%s)", s.seed, role, s.progress())
		}
		time.Sleep(time.Duration(delay) * time.Millisecond)
		if ended, err := s.kids["backfill"].Exited(); role == "backfill" && ended {
			if err != nil {
				s.fatalf("the backfill process failed: %v\n%s", err, s.kids["backfill"].Tail(6000))
			}
			role = "tailer"
		}
		c := s.kids[role]
		if ended, err := c.Exited(); ended {
			s.fatalf("the %s process ended by itself: %v\n%s", role, err, c.Tail(6000))
		}
		c.Kill()
		if role == "backfill" {
			s.env.backfillKills.Add(1)
		} else {
			s.env.tailerKills.Add(1)
		}
		did = append(did, fmt.Sprintf("%s killed after %d writes (%s)", role, s.writes.Load(), s.progress()))
		s.event("%s killed: %s", role, s.progress())
		s.start(role)
	}
	return strings.Join(did, ", ")
}

// done is how far the process of role has got: documents copied (-1 without a plan, the max
// once the backfill is done) or changes applied.
func (s *convergeSeed) done(role string) int64 {
	ctx := context.Background()
	if role == "tailer" {
		return s.applied(ctx, s.cat)
	}
	p, err := backfill.Status(ctx, s.cat, "users-v2")
	switch {
	case err != nil:
		return -1
	case p.State == backfill.StateDone:
		return math.MaxInt64
	}
	return p.Copied
}

// waitFor waits up to d until the process of role has done something since it started, or
// the backfill is done; false when it has not.
func (s *convergeSeed) waitFor(role string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if n := s.done(role); n > s.base[role] || n == math.MaxInt64 {
			return true
		}
	}
	return false
}

// write writes into coll (through the proxy or straight into old) until stop, at most 500
// times, and records the errors.
func (s *convergeSeed) write(coll *mongo.Collection, rng *rand.Rand, stop <-chan struct{}, proxied bool) {
	ctx := context.Background()
	who := "direct"
	if proxied {
		who = "proxy"
	}
	for range 500 {
		select {
		case <-stop:
			return
		default:
		}
		did, err := convergeWrite(ctx, coll, rng)
		s.event("%s %s", who, did)
		if err != nil {
			s.errMu.Lock()
			s.errs = append(s.errs, fmt.Sprintf("%s %s: %v", who, did, err))
			s.errMu.Unlock()
		}
		s.writes.Add(1)
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
	}
}

// convergeWrite is one random write of every kind the issue names; every document it leaves
// stays transformable (an email with an @, an int32 age). It returns what it did, for the log
// of a failed seed.
func convergeWrite(ctx context.Context, coll *mongo.Collection, rng *rand.Rand) (string, error) {
	id := convergeKey(rng)
	byID := bson.D{{Key: "_id", Value: id}}
	n := rng.IntN(1000)
	switch r := rng.IntN(100); {
	case r < 25:
		_, err := coll.InsertOne(ctx, e2eUser(id, n))
		if mongo.IsDuplicateKeyError(err) {
			return fmt.Sprintf("insert %s/%d: duplicate", id, n), nil
		}
		return fmt.Sprintf("insert %s/%d", id, n), err
	case r < 45:
		res, err := coll.UpdateOne(ctx, byID, bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: fmt.Sprintf("Set %d", n)}, {Key: "age", Value: int32(18 + n%60)}}}})
		return fmt.Sprintf("updateOne %s: $set name, age %d: %s", id, 18+n%60, updated(res)), err
	case r < 60:
		upsert := rng.IntN(2) == 0
		res, err := coll.ReplaceOne(ctx, byID, e2eUser(id, n)[1:], options.Replace().SetUpsert(upsert))
		return fmt.Sprintf("replaceOne %s/%d upsert %t: %s", id, n, upsert, updated(res)), err
	case r < 72:
		res, err := coll.DeleteOne(ctx, byID)
		return fmt.Sprintf("deleteOne %s: %s", id, deleted(res)), err
	case r < 82:
		err := coll.FindOneAndUpdate(ctx, byID, bson.D{{Key: "$set", Value: bson.D{{Key: "email", Value: fmt.Sprintf("f%d@example.org", n)}}}}).Err()
		if errors.Is(err, mongo.ErrNoDocuments) {
			return fmt.Sprintf("findOneAndUpdate %s: no document", id), nil
		}
		return fmt.Sprintf("findOneAndUpdate %s: $set email", id), err
	case r < 94:
		lo := int32(18 + rng.IntN(60))
		res, err := coll.UpdateMany(ctx, bson.D{{Key: "age", Value: bson.D{{Key: "$gte", Value: lo}, {Key: "$lt", Value: lo + 8}}}},
			bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: fmt.Sprintf("Many %d", n)}}}})
		return fmt.Sprintf("updateMany age %d-%d: %s", lo, lo+7, updated(res)), err
	default:
		lo := int32(18 + rng.IntN(60))
		res, err := coll.DeleteMany(ctx, bson.D{{Key: "age", Value: bson.D{{Key: "$gte", Value: lo}, {Key: "$lt", Value: lo + 2}}}})
		return fmt.Sprintf("deleteMany age %d-%d: %s", lo, lo+1, deleted(res)), err
	}
}

func updated(r *mongo.UpdateResult) string {
	if r == nil {
		return "failed"
	}
	return fmt.Sprintf("matched %d, modified %d, upserted %v", r.MatchedCount, r.ModifiedCount, r.UpsertedID)
}

func deleted(r *mongo.DeleteResult) string {
	if r == nil {
		return "failed"
	}
	return fmt.Sprintf("deleted %d", r.DeletedCount)
}

// event records what happened when, for the log of a failed seed.
func (s *convergeSeed) event(format string, args ...any) {
	s.evMu.Lock()
	defer s.evMu.Unlock()
	s.events = append(s.events, fmt.Sprintf("%8s %s", time.Since(s.began).Round(time.Millisecond), fmt.Sprintf(format, args...)))
}

// progress is what the backfill and the tailer have done so far, for the log.
func (s *convergeSeed) progress() string {
	ctx := context.Background()
	copied := "no backfill plan yet"
	if p, err := backfill.Status(ctx, s.cat, "users-v2"); err == nil {
		copied = fmt.Sprintf("%d/%d partitions done, %d copied", p.PartitionsDone, p.Partitions, p.Copied)
	}
	return fmt.Sprintf("%s, %d changes applied", copied, s.applied(ctx, s.cat))
}

func (s *convergeSeed) writeErrors() []string {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return append([]string(nil), s.errs...)
}

// applied is the changes the forward tailer has applied over every run, 0 before the first.
func (s *convergeSeed) applied(ctx context.Context, cat *catalog.Catalog) int64 {
	st, err := cat.CDCStream(ctx, "users-v2", cdc.PathForward)
	if err != nil {
		return 0
	}
	return st.Applied
}

// cleanup drops the seed's databases and trims the oplog, so that the next seed's streams do
// not scan this one's entries (mongo-java-server's getMore reads its whole oplog).
func (s *convergeSeed) cleanup(db string) {
	ctx := context.Background()
	for _, c := range s.kids {
		c.Kill()
	}
	for _, name := range []string{db, s.catDB} {
		names, _ := s.env.direct.Database(name).ListCollectionNames(ctx, bson.D{})
		for _, c := range names {
			if err := s.env.direct.Database(name).Collection(c).Drop(ctx); err != nil {
				s.t.Errorf("seed %d: dropping %s.%s: %v", s.seed, name, c, err)
			}
		}
	}
	s.env.trim(s.t)
}

// convergeTrimEvery is how many seeds run between two trims of the oplog.
const convergeTrimEvery = 10

// trim makes the server forget its oplog every convergeTrimEvery seeds, so that the streams
// of later seeds do not scan every earlier seed's entries (mongo-java-server's getMore reads
// its whole oplog, and it never shrinks by itself).
func (env *convergeEnv) trim(t *testing.T) {
	if env.seeds++; env.seeds%convergeTrimEvery != 0 {
		return
	}
	if err := testenv.TrimOplog(context.Background(), env.direct); err != nil {
		t.Errorf("%v", err)
	}
	env.trimmedAt = time.Now()
	// What a soak's 1,000 seeds would show growing, if anything leaked per seed.
	t.Logf("%d seeds run, oplog trimmed; %d goroutines in the test process", env.seeds, runtime.NumGoroutine())
}

// afterTrim waits until a start position taken now lies after the last trim: the position a
// server without post-batch resume tokens gives is its clock a second ago, in whole seconds,
// and one before the trim would resume into forgotten history (ChangeStreamHistoryLost).
func (env *convergeEnv) afterTrim() {
	time.Sleep(time.Until(env.trimmedAt.Add(2 * time.Second)))
}
