package cdc_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
)

// The reverse tailer over a DynamoDB stream, killed: TestReverseDynamoTailerSurvivesKills.
const (
	revChildEnv      = "TANDEM_REVDYN_CHILD" // set only in a child
	revChildURI      = "TANDEM_REVDYN_URI"   // mongo-java-server: old store and catalog
	revChildDB       = "TANDEM_REVDYN_DB"
	revChildEndpoint = "TANDEM_REVDYN_ENDPOINT" // moto
	revChildTable    = "TANDEM_REVDYN_TABLE"
)

const revDynSpec = `name: users-test
source:
  mongodb: {uri: "mongodb://unused/", database: d, collection: users}
target:
  dynamodb: {table: users_v2, region: us-east-1}
key:
  partition: pk
forward:
  - rename: {from: name, to: profile.name}
  - set: {path: v, value: "2"}
`

// revDynEnv is the reverse path of a migration from db.users (mongo-java-server, catalog in
// db_meta) to a DynamoDB table on moto, as tandem run builds it: the streams client from the
// store's AWSConfig, the tailer in reverse.
type revDynEnv struct {
	client *mongo.Client
	old    *mongo.Collection
	dyn    *adapters.DynamoStore
	cat    *catalog.Catalog
	spec   *transform.Spec
	tailer *cdc.Tailer
}

func openRevDynEnv(uri, db, endpoint, table string, log *slog.Logger) (*revDynEnv, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		return nil, err
	}
	e := &revDynEnv{client: c, old: c.Database(db).Collection("users")}
	if e.cat, err = catalog.Open(ctx, c, catalog.WithDatabase(db+"_meta")); err != nil {
		return nil, err
	}
	if e.spec, err = transform.Parse("users-test.yaml", []byte(revDynSpec)); err != nil {
		return nil, err
	}
	if e.dyn, err = adapters.NewDynamoStore(ctx, table, "pk", adapters.DynamoEndpoint(endpoint), adapters.DynamoRegion(testenv.MotoRegion),
		adapters.DynamoStaticCredentials(testenv.MotoAccessKey, testenv.MotoSecretKey)); err != nil {
		return nil, err
	}
	engine, err := shadow.NewEngine(shadow.Config{Migration: "users-test", SpecVersion: e.spec.Version, Old: adapters.NewMongoStore(e.old),
		New: e.dyn, Forward: e.spec.Forward, Reverse: e.spec.Reverse, DeadLetters: e.cat, Log: log})
	if err != nil {
		return nil, err
	}
	src, err := cdc.NewDynamoStream(cdc.DynamoStreamConfig{Streams: dynamodbstreams.NewFromConfig(e.dyn.AWSConfig()), Table: e.dyn,
		Limit: 13, MinPoll: 5 * time.Millisecond, MaxIdle: 50 * time.Millisecond, IdleCheckpoint: 100 * time.Millisecond, Log: log})
	if err != nil {
		return nil, err
	}
	e.tailer, err = cdc.NewTailer(cdc.TailerConfig{Migration: "users-test", Direction: shadow.Reverse, Source: src, Engine: engine,
		Checkpoints: e.cat, LagReporter: e.cat, MaxConverge: 7, Logger: log})
	return e, err
}

// TestReverseDynamoTailerSurvivesKills runs the reverse tailer over a DynamoDB table's stream
// (moto) in a child process and SIGKILLs it at random moments ten times, restarting it each
// time, while a writer puts and deletes items straight in the table; a last run in the test
// process then catches up, and a full comparison shows that old holds exactly the reverse of
// every item and nothing else: nothing lost, nothing left different.
func TestReverseDynamoTailerSurvivesKills(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	mongoJava(t)
	m := testenv.StartMotoT(t)
	db := fmt.Sprintf("revdyn_crash_%d", seq.Add(1))
	table := testenv.UniqueName("revdyn")
	log := slog.New(slog.DiscardHandler)
	e, err := openRevDynEnv(mjServer.URI(), db, m.Endpoint(), table, log)
	require.NoError(t, err)
	ctx := context.Background()
	t.Cleanup(func() {
		_ = e.client.Database(db).Drop(ctx)
		_ = e.client.Database(db + "_meta").Drop(ctx)
		_ = e.client.Disconnect(ctx)
	})
	_, err = e.dyn.Provision(ctx, adapters.Provisioning{}) // with a stream
	require.NoError(t, err)
	_, err = e.tailer.Prepare(ctx) // the start position, before any write
	require.NoError(t, err)

	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 11))
	t.Logf("seed %d", seed)
	stop := make(chan struct{})
	var (
		wg     sync.WaitGroup
		writes atomic.Int64
	)
	wrng := rand.New(rand.NewPCG(rng.Uint64(), 2))
	wg.Go(func() {
		for writes.Load() < 1500 {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("k%02d", wrng.IntN(40))
			var err error
			if wrng.IntN(4) == 0 {
				err = e.dyn.Delete(ctx, id)
			} else {
				err = e.dyn.Upsert(ctx, bson.D{{Key: "pk", Value: id}, {Key: "profile", Value: bson.D{{Key: "name", Value: fmt.Sprintf("n%d", writes.Load())}}},
					{Key: "age", Value: int32(wrng.IntN(90))}, {Key: "v", Value: "2"}})
			}
			if err != nil {
				t.Errorf("writing %s: %v", id, err)
				return
			}
			writes.Add(1)
		}
	})
	stopWriter := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopWriter)

	applied := func() int64 {
		s, err := e.cat.CDCStream(ctx, "users-test", cdc.PathReverse)
		require.NoError(t, err)
		return s.Applied
	}
	for i := range 10 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReverseDynamoTailerChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), revChildEnv+"=1", revChildURI+"="+mjServer.URI(), revChildDB+"="+db,
			revChildEndpoint+"="+m.Endpoint(), revChildTable+"="+table)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		before := applied()
		// Kill it at a random moment once it has applied something of this run (or after a
		// while, should it have nothing to apply).
		deadline := time.Now().Add(time.Duration(300+rng.IntN(1200)) * time.Millisecond)
		for time.Now().Before(deadline) || applied() == before && time.Now().Before(deadline.Add(30*time.Second)) {
			time.Sleep(time.Duration(10+rng.IntN(40)) * time.Millisecond)
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		require.Error(t, waitChild(cmd, 10*time.Second), "killed")
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		require.True(t, ok && ws.Signaled(), "run %d ended by itself (%s), not by the kill:\n%s", i+1, cmd.ProcessState, out.String())
		t.Logf("kill %d: %d writes so far, %d changes applied", i+1, writes.Load(), applied())
	}
	stopWriter()

	// The last run, in this process, until old is the reverse of the table.
	start(t, e.tailer)
	var why string
	for limit := time.Now().Add(2 * waitLimit); ; time.Sleep(100 * time.Millisecond) {
		var ok bool
		if ok, why = reverseConverged(t, e); ok {
			break
		}
		require.False(t, time.Now().After(limit), "not converged: %s", why)
	}
	n, err := e.old.CountDocuments(ctx, bson.D{})
	require.NoError(t, err)
	t.Logf("%d writes, %d documents in old, %d changes applied over 11 runs", writes.Load(), n, applied())
	require.Positive(t, n, "the writer left nothing: the comparison proves little")
}

// reverseConverged reports whether old holds exactly the reverse transform of every item of
// the table and nothing else, reading both whole.
func reverseConverged(t *testing.T, e *revDynEnv) (bool, string) {
	ctx := context.Background()
	want := map[string]bson.D{}
	err := e.dyn.Scan(ctx, adapters.Partition{}, adapters.ScanOptions{Batch: 100}, func(items []bson.D) error {
		for _, it := range items {
			d, err := e.spec.Reverse(it)
			if err != nil {
				return err
			}
			k, err := e.dyn.KeyOf(it)
			if err != nil {
				return err
			}
			want[fmt.Sprint(k)] = d
		}
		return nil
	})
	require.NoError(t, err)
	cur, err := e.old.Find(ctx, bson.D{})
	require.NoError(t, err)
	var got []bson.D
	require.NoError(t, cur.All(ctx, &got))
	if len(got) != len(want) {
		return false, fmt.Sprintf("old holds %d documents, the table %d items", len(got), len(want))
	}
	for _, d := range got {
		id := fmt.Sprint(d[0].Value)
		if w, ok := want[id]; !ok || !transform.Equal(w, d) {
			return false, fmt.Sprintf("%s: old %v, reverse of the item %v", id, d, w)
		}
	}
	return true, ""
}

// TestReverseDynamoTailerChild is the child process of TestReverseDynamoTailerSurvivesKills:
// it runs the reverse tailer until killed (a failed run is run again, as the runtime's
// supervisor does); run by itself it skips.
func TestReverseDynamoTailerChild(t *testing.T) {
	if os.Getenv(revChildEnv) == "" {
		t.Skip("the child of TestReverseDynamoTailerSurvivesKills")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := openRevDynEnv(os.Getenv(revChildURI), os.Getenv(revChildDB), os.Getenv(revChildEndpoint), os.Getenv(revChildTable), log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open:", err)
		os.Exit(2)
	}
	for {
		if err := e.tailer.Run(context.Background()); err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "child: run:", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
}
