package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/cdc/scaleout"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
)

// bench holds the clients a run shares.
type bench struct {
	stores *mongo.Client // mongo-java-server: the old and new collections
	meta   *mongo.Client // the embedded FerretDB: the catalogs
	poll   time.Duration
	seq    int
}

// migration is one measurement's migration: DB.users → DB.users_v2 on mongo-java-server (the
// spec of cdc/scaleout), its catalog in DB_meta on FerretDB.
type migration struct {
	db       string
	old, new *mongo.Collection
	spec     *transform.Spec
	cat      *catalog.Catalog
	engine   *shadow.Engine
	drop     func()
}

// quiet drops the tailer's and the engine's logs; failures come back as errors.
var quiet = slog.New(slog.DiscardHandler)

// afterTrim is how long newMigration waits after trimming the oplog: a stream's start position
// on this server is its clock a second ago, in whole seconds (cdc.ChangeStream.Start), and a
// position older than the trim is history lost.
const afterTrim = 2100 * time.Millisecond

// newMigration trims the server's oplog (so that every measurement's getMores scan an oplog of
// its own size) and opens a fresh migration named after what it measures.
func (b *bench) newMigration(ctx context.Context, what string) (*migration, error) {
	if err := testenv.TrimOplog(ctx, b.stores); err != nil {
		return nil, err
	}
	time.Sleep(afterTrim)
	b.seq++
	db := fmt.Sprintf("cdcbench_%d_%s", b.seq, what)
	m := &migration{db: db}
	m.drop = func() {
		_ = b.stores.Database(db).Drop(context.Background())
		_ = b.meta.Database(db + "_meta").Drop(context.Background())
	}
	m.drop()
	oldStore, newStore := scaleout.Stores(b.stores, db)
	m.old, m.new = oldStore.Collection(), newStore.Collection()
	var err error
	if m.spec, err = scaleout.Spec(db); err != nil {
		return nil, err
	}
	if m.cat, err = catalog.Open(ctx, b.meta, catalog.WithDatabase(db+"_meta")); err != nil {
		return nil, err
	}
	m.engine, err = shadow.NewEngine(shadow.Config{
		Migration: scaleout.Migration, SpecVersion: m.spec.Version, Old: oldStore, New: newStore,
		Forward: m.spec.Forward, Reverse: m.spec.Reverse, DeadLetters: m.cat, Log: quiet,
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// hooks are what a measurement observes of a tailer; every field is optional.
type hooks struct {
	wrap  func(cdc.Source) cdc.Source // wraps the source
	saved func(applied int64)         // after each checkpoint, with the number of changes of its batch
	steps *steps                      // the time of each ConvergeBatch call and of each checkpoint
}

// tailer is the forward tailer as tandem run builds it (cmd/tandem/cdccmd.go: the source's
// defaults, the catalog for checkpoints and lag), without a lease (one process) and without
// the backfill interplay (no backfill runs).
func (m *migration) tailer(poll time.Duration, h hooks) (*cdc.Tailer, error) {
	var src cdc.Source
	src, err := cdc.NewChangeStream(cdc.ChangeStreamConfig{Collection: m.old, Poll: poll, Logger: quiet})
	if err != nil {
		return nil, err
	}
	if h.wrap != nil {
		src = h.wrap(src)
	}
	return cdc.NewTailer(cdc.TailerConfig{
		Migration: scaleout.Migration, Direction: shadow.Forward, Source: src, Engine: timedEngine{m.engine, h.steps},
		Checkpoints: savedHook{Catalog: m.cat, h: h}, LagReporter: m.cat, Logger: quiet,
	})
}

// steps collects how long the tailer's two writes per batch took: converging its keys
// (reads of both stores, writes of new) and saving its checkpoint (the catalog, on FerretDB).
type steps struct {
	mu             sync.Mutex
	converge, save []time.Duration
}

func (s *steps) add(converge bool, d time.Duration) {
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if converge {
		s.converge = append(s.converge, d)
	} else {
		s.save = append(s.save, d)
	}
}

// timedEngine is the engine, timing each ConvergeBatch into steps.
type timedEngine struct {
	*shadow.Engine
	steps *steps
}

func (e timedEngine) ConvergeBatch(ctx context.Context, keys []adapters.Key, dir shadow.Direction) ([]shadow.Result, error) {
	start := time.Now()
	res, err := e.Engine.ConvergeBatch(ctx, keys, dir)
	e.steps.add(true, time.Since(start))
	return res, err
}

// savedHook is the catalog as a tailer's checkpoints, timing each save into steps and then
// telling saved how many changes it covers: once it returns, those changes have landed.
type savedHook struct {
	*catalog.Catalog
	h hooks
}

func (s savedHook) SaveCDCPosition(ctx context.Context, migration, path string, pos cdc.Position, at time.Time, applied int64) error {
	start := time.Now()
	if err := s.Catalog.SaveCDCPosition(ctx, migration, path, pos, at, applied); err != nil {
		return err
	}
	s.h.steps.add(false, time.Since(start))
	if s.h.saved != nil {
		s.h.saved(applied)
	}
	return nil
}

// insertDocs inserts documents first..first+n-1 into coll, 100 to a command.
func insertDocs(ctx context.Context, coll *mongo.Collection, first, n int) error {
	docs := make([]any, 0, n)
	for i := first; i < first+n; i++ {
		docs = append(docs, scaleout.Doc(docID(i), int32(i%90)))
	}
	for chunk := range slices.Chunk(docs, 100) {
		if _, err := coll.InsertMany(ctx, chunk); err != nil {
			return fmt.Errorf("inserting into %s: %w", coll.Name(), err)
		}
	}
	return nil
}

func docID(i int) string { return fmt.Sprintf("k%07d", i) }

// converged checks that the new collection holds exactly the transform of every old document.
func (m *migration) converged(ctx context.Context) error {
	want, err := readAll(ctx, m.old)
	if err != nil {
		return err
	}
	got, err := readAll(ctx, m.new)
	if err != nil {
		return err
	}
	if len(want) != len(got) {
		return fmt.Errorf("%d documents in %s, %d in %s", len(want), m.old.Name(), len(got), m.new.Name())
	}
	for k, d := range want {
		w, err := m.spec.Forward(d)
		if err != nil {
			return fmt.Errorf("transforming %s: %w", k, err)
		}
		if g, ok := got[k]; !ok || !transform.Equal(w, g) {
			return fmt.Errorf("%s in %s is %v, want %v", k, m.new.Name(), g, w)
		}
	}
	return nil
}

func readAll(ctx context.Context, c *mongo.Collection) (map[string]bson.D, error) {
	cur, err := c.Find(ctx, bson.D{})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", c.Name(), err)
	}
	var docs []bson.D
	if err := cur.All(ctx, &docs); err != nil {
		return nil, fmt.Errorf("reading %s: %w", c.Name(), err)
	}
	out := make(map[string]bson.D, len(docs))
	for _, d := range docs {
		out[fmt.Sprint(idOf(d))] = d
	}
	return out, nil
}

// idOf is the document's _id (nil without one).
func idOf(d bson.D) any {
	for _, e := range d {
		if e.Key == "_id" {
			return e.Value
		}
	}
	return nil
}
