package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/event"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
	"github.com/tandemdb/tandem/verify"
)

// specTemplate is the users-v2 example's forward steps (examples/users-v2.yaml) with a target
// (%[1]s) and a key block (%[2]s).
const specTemplate = `name: users-v2
source:
  mongodb: {uri: "mongodb://unused/", database: verifybench, collection: users}
target:
  %[1]s
key:
  %[2]s
forward:
  - compute: {path: email_domain, expr: 'doc.email.split("@")[1]'}
  - rename: {from: name, to: profile.full_name}
  - move: {from: email, to: profile.email}
  - convert: {path: age, from: int32, to: int64}
  - convert: {path: created, from: date, to: string}
  - set: {path: schema_version, value: 2}
`

// bench holds the servers and clients a run shares.
type bench struct {
	client   *mongo.Client // the embedded FerretDB: old stores, the MongoDB target, catalogs
	catalog  *mongo.Client // the same FerretDB, for the catalogs, its commands counted in calls
	calls    *calls
	moto     *testenv.Moto
	runs     int
	profiled bool // the -cpuprofile of the first full pass is taken
}

// calls counts the catalog's commands and the time they took, from the driver's command
// monitor: the full pass's catalog traffic, beside its reads of the stores.
type calls struct {
	mu    sync.Mutex
	n     int
	total time.Duration
}

func (c *calls) monitor() *event.CommandMonitor {
	done := func(d time.Duration) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.n++
		c.total += d
	}
	return &event.CommandMonitor{
		Succeeded: func(_ context.Context, e *event.CommandSucceededEvent) { done(e.Duration) },
		Failed:    func(_ context.Context, e *event.CommandFailedEvent) { done(e.Duration) },
	}
}

// take returns the count and time so far and starts again from zero.
func (c *calls) take() (int, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, t := c.n, c.total
	c.n, c.total = 0, 0
	return n, t
}

func (b *bench) close() {
	if b.moto != nil {
		b.moto.Stop()
	}
}

// fixture is one converged migration: new holds the transform of every old document.
type fixture struct {
	name     string
	docs     int
	seeded   time.Duration
	old, new adapters.Store
	spec     *transform.Spec
	lookups  bool // the full pass looks keys up in the other store (it does not merge)
}

func (b *bench) dynamoFixture(ctx context.Context, n int) (*fixture, error) {
	table := testenv.UniqueName("verifybench")
	if err := testenv.CreateTable(ctx, b.moto.DynamoDB(), testenv.Table{Name: table, Key: "pk"}); err != nil {
		return nil, err
	}
	dyn, err := adapters.NewDynamoStore(ctx, table, "pk", adapters.DynamoClient(b.moto.DynamoDB()))
	if err != nil {
		return nil, err
	}
	spec, err := transform.Parse("users-v2-dynamodb.yaml", fmt.Appendf(nil, specTemplate,
		"dynamodb: {table: "+table+", region: us-east-1}", "{source: _id, partition: pk}"))
	if err != nil {
		return nil, err
	}
	fx := &fixture{name: "MongoDB (FerretDB) → DynamoDB (moto)", docs: n, spec: spec, new: dyn, lookups: true,
		old: adapters.NewMongoStore(b.client.Database("verifybench_dyn").Collection("users"))}
	return fx, fx.seed(ctx)
}

func (b *bench) mongoFixture(ctx context.Context, n int) (*fixture, error) {
	spec, err := transform.Parse("users-v2.yaml", fmt.Appendf(nil, specTemplate,
		`mongodb: {uri: "mongodb://unused/", database: verifybench, collection: users_v2}`, "{source: _id, target: _id}"))
	if err != nil {
		return nil, err
	}
	db := b.client.Database("verifybench_mongo")
	fx := &fixture{name: "MongoDB → MongoDB (both FerretDB)", docs: n, spec: spec,
		old: adapters.NewMongoStore(db.Collection("users")), new: adapters.NewMongoStore(db.Collection("users_v2"))}
	return fx, fx.seed(ctx)
}

// seed empties both stores' collection or table (a MongoDB one is dropped) and writes the
// users 0..docs-1 to old and their transforms to new, 500 at a time.
func (fx *fixture) seed(ctx context.Context) error {
	for _, s := range []adapters.Store{fx.old, fx.new} {
		if ms, ok := s.(*adapters.MongoStore); ok {
			if err := ms.Collection().Drop(ctx); err != nil {
				return err
			}
		}
	}
	start := time.Now()
	for first := 0; first < fx.docs; first += 500 {
		var olds, news []adapters.WriteOp
		for i := first; i < min(first+500, fx.docs); i++ {
			d := user(i)
			out, err := fx.spec.Forward(d)
			if err != nil {
				return fmt.Errorf("transforming %s: %w", userID(i), err)
			}
			olds = append(olds, adapters.WriteOp{Key: userID(i), Doc: d})
			news = append(news, adapters.WriteOp{Key: userID(i), Doc: out})
		}
		if err := write(ctx, fx.old, olds); err != nil {
			return fmt.Errorf("seeding the old store: %w", err)
		}
		if err := write(ctx, fx.new, news); err != nil {
			return fmt.Errorf("seeding the new store: %w", err)
		}
	}
	fx.seeded = time.Since(start)
	return nil
}

// write inserts ops into an emptied store: with insertMany where the store has it (an upsert
// on FerretDB looks its key up with a collection scan, which makes seeding quadratic).
func write(ctx context.Context, s adapters.Store, ops []adapters.WriteOp) error {
	ins, ok := s.(adapters.Inserter)
	if !ok {
		return s.BulkWrite(ctx, ops)
	}
	present, err := ins.InsertNew(ctx, ops)
	if err == nil && len(present) > 0 {
		err = fmt.Errorf("%d documents were already there", len(present))
	}
	return err
}

func userID(i int) string { return fmt.Sprintf("user-%06d", i) }

// user is a source document of the users-v2 example.
func user(i int) bson.D {
	return bson.D{
		{Key: "_id", Value: userID(i)},
		{Key: "name", Value: fmt.Sprintf("User %d", i)},
		{Key: "email", Value: fmt.Sprintf("user%d@example.com", i)},
		{Key: "age", Value: int32(18 + i%50)},
		{Key: "created", Value: bson.NewDateTimeFromTime(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(i) * time.Hour))},
	}
}

// fullPass runs verify.Run in a fresh catalog (opened before the clock starts, dropped after
// it stops) and checks that it found the migration clean with every key compared.
func (b *bench) fullPass(ctx context.Context, fx *fixture) (time.Duration, error) {
	b.runs++
	meta := b.client.Database(fmt.Sprintf("verifybench_meta_%d", b.runs))
	defer func() { _ = meta.Drop(context.Background()) }()
	cat, err := catalog.Open(ctx, b.catalog, catalog.WithDatabase(meta.Name()))
	if err != nil {
		return 0, err
	}
	b.calls.take()
	defer func() {
		n, t := b.calls.take()
		fmt.Printf("#   the full pass's catalog: %d commands, %s in all\n", n, t.Round(time.Millisecond))
	}()
	if *flagCPUProfile != "" && !b.profiled {
		b.profiled = true
		stop, err := profile(*flagCPUProfile)
		if err != nil {
			return 0, err
		}
		defer stop()
	}
	start := time.Now()
	sum, err := verify.Run(ctx, verify.Config{
		Migration: fx.spec.Name, SpecVersion: fx.spec.Version, Old: fx.old, New: fx.new, Forward: fx.spec.Forward,
		Catalog: cat, Partitions: *flagPartitions, Batch: *flagBatch, Concurrency: *flagConcurrency, Plan: *flagPlan,
		Logger: logger(),
	})
	d := time.Since(start)
	if err != nil {
		return 0, err
	}
	if !sum.Clean || sum.Keys != int64(fx.docs) {
		return 0, fmt.Errorf("the full pass compared %d keys of %d, clean %v: %v", sum.Keys, fx.docs, sum.Clean, sum.Samples)
	}
	return d, nil
}

// logger is the verifier's logger: discarded, or with -log printed to stderr.
func logger() *slog.Logger {
	if !*flagLog {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}

// profile starts writing a CPU profile to file; stop ends it.
func profile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// scanTask is one partition of one store to scan; each batch's keys are then looked up in
// lookup, unless it is nil.
type scanTask struct {
	store, lookup adapters.Store
	part          adapters.Partition
}

// rawLookups reads what the full pass of a look-up plan reads: the old store's partitions,
// each batch's keys looked up in new, and the new store's partitions, each batch's keys looked
// up in old.
func rawLookups(ctx context.Context, fx *fixture) (time.Duration, error) {
	start := time.Now()
	oldTasks, err := tasks(ctx, fx.old, fx.old, fx.new)
	if err != nil {
		return 0, err
	}
	newTasks, err := tasks(ctx, fx.new, fx.new, fx.old)
	if err != nil {
		return 0, err
	}
	if err := runTasks(ctx, slices.Concat(oldTasks, newTasks)); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// rawDualScan scans every partition of both stores once and looks nothing up: on MongoDB →
// MongoDB both in the old store's partitions, otherwise each store in its own.
func rawDualScan(ctx context.Context, fx *fixture) (time.Duration, error) {
	start := time.Now()
	oldTasks, err := tasks(ctx, fx.old, fx.old, nil)
	if err != nil {
		return 0, err
	}
	var newTasks []scanTask
	if fx.lookups {
		if newTasks, err = tasks(ctx, fx.new, fx.new, nil); err != nil {
			return 0, err
		}
	} else {
		for _, t := range oldTasks {
			newTasks = append(newTasks, scanTask{store: fx.new, part: t.part})
		}
	}
	if err := runTasks(ctx, slices.Concat(oldTasks, newTasks)); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// tasks splits partitioned into -partitions scans of store looking keys up in lookup.
func tasks(ctx context.Context, partitioned, store, lookup adapters.Store) ([]scanTask, error) {
	parts, err := partitioned.Partitions(ctx, *flagPartitions)
	if err != nil {
		return nil, fmt.Errorf("partitioning: %w", err)
	}
	out := make([]scanTask, len(parts))
	for i, p := range parts {
		out[i] = scanTask{store: store, lookup: lookup, part: p}
	}
	return out, nil
}

// runTasks runs the tasks on -concurrency goroutines; the first error stops the rest.
func runTasks(ctx context.Context, ts []scanTask) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queue := make(chan scanTask, len(ts))
	for _, t := range ts {
		queue <- t
	}
	close(queue)
	var wg sync.WaitGroup
	for range *flagConcurrency {
		wg.Go(func() {
			for t := range queue {
				if err := t.run(ctx); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

func (t scanTask) run(ctx context.Context) error {
	return t.store.Scan(ctx, t.part, adapters.ScanOptions{Batch: *flagBatch}, func(docs []bson.D) error {
		if t.lookup == nil {
			return nil
		}
		keys := make([]adapters.Key, 0, len(docs))
		for _, d := range docs {
			k, err := t.store.KeyOf(d)
			if err != nil {
				return err
			}
			keys = append(keys, k)
		}
		_, err := t.lookup.BatchGet(ctx, keys)
		return err
	})
}
