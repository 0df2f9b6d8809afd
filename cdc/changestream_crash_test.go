package cdc_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/transform"
)

// crashEnv is the crash test's migration: db.users → db.users_v2 with the catalog in db_meta,
// all on one mongo-java-server, so that a child process reaches everything by one URI. With a
// Kafka broker its tailer publishes to the journal (topic db) instead of converging.
type crashEnv struct {
	uri, db string
	client  *mongo.Client
	old     *mongo.Collection
	new     *mongo.Collection
	cat     *catalog.Catalog
	engine  *shadow.Engine
	journal *adapters.KafkaJournal // nil: the tailer converges
	tailer  *cdc.Tailer
}

func openCrashEnv(uri, db, broker string, log *slog.Logger) (*crashEnv, error) {
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return nil, err
	}
	e := &crashEnv{uri: uri, db: db, client: c, old: c.Database(db).Collection("users"), new: c.Database(db).Collection("users_v2")}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if e.cat, err = catalog.Open(ctx, c, catalog.WithDatabase(db+"_meta")); err != nil {
		return nil, err
	}
	spec, err := transform.Parse("users-test.yaml", []byte(spec))
	if err != nil {
		return nil, err
	}
	e.engine, err = shadow.NewEngine(shadow.Config{
		Migration: "users-test", SpecVersion: spec.Version, Old: adapters.NewMongoStore(e.old), New: adapters.NewMongoStore(e.new),
		Forward: spec.Forward, Reverse: spec.Reverse, DeadLetters: e.cat, Log: log,
	})
	if err != nil {
		return nil, err
	}
	src, err := cdc.NewChangeStream(cdc.ChangeStreamConfig{Collection: e.old, Poll: 20 * time.Millisecond, BatchSize: 50, MaxChanges: 50, Logger: log})
	if err != nil {
		return nil, err
	}
	cfg := cdc.TailerConfig{
		Migration: "users-test", Direction: shadow.Forward, Source: src, Engine: e.engine, Checkpoints: e.cat,
		LagReporter: e.cat, MaxConverge: 20, Logger: log,
	}
	if broker != "" {
		if e.journal, err = adapters.NewKafkaJournal(adapters.KafkaJournalConfig{Brokers: []string{broker}, Topic: db, Logger: log}); err != nil {
			return nil, err
		}
		if cfg.Publisher, err = cdc.NewPublisher(e.journal, "users-test", db+".users"); err != nil {
			return nil, err
		}
	}
	e.tailer, err = cdc.NewTailer(cfg)
	return e, err
}

// childMain is a tailer process of the crash test: it follows the change stream of the
// database its environment names until it is killed.
func childMain() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := openCrashEnv(os.Getenv("TANDEM_CDC_URI"), os.Getenv("TANDEM_CDC_DB"), os.Getenv("TANDEM_CDC_KAFKA"), log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		return 2
	}
	// A run that fails (the catalog busy, say) is run again, as the runtime's supervisor does.
	for {
		if err := e.tailer.Run(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "child: run:", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestChangeStreamCrash kills a tailer process with SIGKILL at random points, ten times,
// while a writer writes straight into the old store (inserts, updates, replaces, deletes, no
// proxy), restarting it each time; then a last run catches up and a full comparison shows the
// new store is exactly the transform of old: nothing lost, duplicated or different.
func TestChangeStreamCrash(t *testing.T) { crashTailer(t, "") }

// TestChangeStreamPublishCrash is TestChangeStreamCrash with a tailer that publishes the keys
// to the journal on a real Apache Kafka broker (TailerConfig.Publisher) while a journal worker
// in the test process converges them: a tailer killed between its publish and its checkpoint
// publishes the batch again, and none is checkpointed before the broker acknowledged it, so
// nothing is lost.
func TestChangeStreamPublishCrash(t *testing.T) { crashTailer(t, kafkaBroker(t).Brokers()[0]) }

// crashTailer runs the crash test, with the tailer publishing to broker's journal when broker
// is not "".
func crashTailer(t *testing.T, broker string) {
	mongoJava(t) // the binary's server
	db := fmt.Sprintf("cs_crash_%d", seq.Add(1))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := openCrashEnv(mjServer.URI(), db, broker, log)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx := context.Background()
		_ = e.client.Database(db).Drop(ctx)
		_ = e.client.Database(db + "_meta").Drop(ctx)
		_ = e.client.Disconnect(ctx)
	})
	ctx := context.Background()
	_, err = e.tailer.Prepare(ctx) // the start position, before any write
	require.NoError(t, err)
	if e.journal != nil {
		t.Cleanup(e.journal.Close)
		require.NoError(t, e.journal.EnsureTopic(ctx, 3, -1))
		w, err := cdc.NewJournalWorker(cdc.JournalWorkerConfig{Journal: e.journal, Group: db,
			Engines: cdc.EngineMap(map[string]*shadow.Engine{"users-test": e.engine}), Logger: log})
		require.NoError(t, err)
		wctx, stopWorker := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- w.Run(wctx) }()
		t.Cleanup(func() { stopWorker(); require.NoError(t, <-done) })
	}

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 10))
	t.Logf("seed %d", seed)
	var writes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		writeRandomly(t, e.old, rand.New(rand.NewPCG(rng.Uint64(), 1)), stop, &writes)
	}()

	for i := range 10 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "TANDEM_CDC_CHILD=1", "TANDEM_CDC_URI="+mjServer.URI(), "TANDEM_CDC_DB="+db, "TANDEM_CDC_KAFKA="+broker)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		applied := appliedOf(t, e.cat)
		// Kill it at a random point once it has applied something of this run (or after a
		// while, should it have nothing to apply).
		deadline := time.Now().Add(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		for time.Now().Before(deadline) || appliedOf(t, e.cat) == applied && time.Now().Before(deadline.Add(20*time.Second)) {
			time.Sleep(time.Duration(10+rng.IntN(40)) * time.Millisecond)
		}
		require.NoError(t, cmd.Process.Kill())
		_ = cmd.Wait()
		t.Logf("kill %d: %d writes so far, %d changes applied", i+1, writes.Load(), appliedOf(t, e.cat))
		if strings.Contains(out.String(), "child: open") {
			t.Fatalf("child %d: %s", i, out.String())
		}
	}
	close(stop)
	wg.Wait()

	// The last run, in this process, until new is the transform of old.
	start(t, e.tailer)
	spec, err := transform.Parse("users-test.yaml", []byte(spec))
	require.NoError(t, err)
	eventuallyConverged(t, e.old, e.new, spec.Forward)
	n, err := e.old.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	t.Logf("%d writes, %d documents in old, %d changes applied over 11 runs", writes.Load(), n, appliedOf(t, e.cat))
	require.Positive(t, n, "the writer wrote nothing that stayed: the comparison proves little")
}

func appliedOf(t *testing.T, cat *catalog.Catalog) int64 {
	t.Helper()
	s, err := cat.CDCStream(context.Background(), "users-test", cdc.PathForward)
	require.NoError(t, err)
	return s.Applied
}

// writeRandomly writes into coll until stop: inserts, $set updates, replaces and deletes of 60
// keys, at most 3000 writes.
func writeRandomly(t *testing.T, coll *mongo.Collection, rng *rand.Rand, stop <-chan struct{}, writes *atomic.Int64) {
	ctx := context.Background()
	for writes.Load() < 3000 {
		select {
		case <-stop:
			return
		default:
		}
		id := fmt.Sprintf("k%02d", rng.IntN(60))
		filter := bson.D{{Key: "_id", Value: id}}
		var err error
		switch rng.IntN(4) {
		case 0:
			_, err = coll.InsertOne(ctx, oldDoc(id, int32(rng.IntN(100))))
			if mongo.IsDuplicateKeyError(err) {
				err = nil
			}
		case 1:
			_, err = coll.UpdateOne(ctx, filter, bson.D{{Key: "$set", Value: bson.D{{Key: "name", Value: fmt.Sprintf("n%d", rng.IntN(1000))}}}})
		case 2:
			_, err = coll.ReplaceOne(ctx, filter, oldDoc(id, int32(rng.IntN(100)))[1:], options.Replace().SetUpsert(true))
		case 3:
			_, err = coll.DeleteOne(ctx, filter)
		}
		if err != nil {
			t.Errorf("writing %s: %v", id, err)
			return
		}
		writes.Add(1)
		time.Sleep(time.Duration(rng.IntN(4)) * time.Millisecond)
	}
}
