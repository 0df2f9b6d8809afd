package adapters

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tandemdb/tandem/testenv"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// The servers of this test binary: one embedded FerretDB, one moto and one Apache Kafka broker,
// each started on first use and stopped by TestMain.
var (
	ferretOnce   sync.Once
	ferret       *testenv.Mongo
	ferretDir    string
	ferretClient *mongo.Client
	ferretErr    error

	motoOnce sync.Once
	moto     *testenv.Moto
	motoErr  error

	kafkaOnce sync.Once
	kafka     *testenv.Kafka
	kafkaErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if ferretClient != nil {
		_ = ferretClient.Disconnect(context.Background())
	}
	if ferret != nil {
		ferret.Stop()
		_ = os.RemoveAll(ferretDir)
	}
	if moto != nil {
		moto.Stop()
	}
	if kafka != nil {
		kafka.Stop()
	}
	os.Exit(code)
}

// mongoClient returns a client of the binary's FerretDB.
func mongoClient(tb testing.TB) *mongo.Client {
	tb.Helper()
	ferretOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if ferretDir, ferretErr = os.MkdirTemp("", "tandem-adapters-ferretdb-"); ferretErr != nil {
			return
		}
		if ferret, ferretErr = testenv.StartMongo(ctx, ferretDir, ""); ferretErr != nil {
			return
		}
		ferretClient, ferretErr = mongo.Connect(options.Client().ApplyURI(ferret.URI()))
	})
	require.NoError(tb, ferretErr, "embedded FerretDB")
	return ferretClient
}

// newMongoStore returns a store over a new collection, dropped when the test ends.
func newMongoStore(tb testing.TB, opts ...MongoOption) *MongoStore {
	tb.Helper()
	coll := mongoClient(tb).Database("adapters").Collection(testenv.UniqueName("c"))
	tb.Cleanup(func() { _ = coll.Drop(context.Background()) })
	return NewMongoStore(coll, opts...)
}

// motoServer returns the binary's moto server; without moto the test skips or fails (see
// testenv.SkipOrFail).
func motoServer(tb testing.TB) *testenv.Moto {
	tb.Helper()
	motoOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		moto, motoErr = testenv.StartMoto(ctx)
	})
	testenv.SkipOrFail(tb, motoErr)
	return moto
}

// kafkaBroker returns the binary's Apache Kafka broker; without its jars the test skips or fails
// (see testenv.SkipOrFailKafka).
func kafkaBroker(tb testing.TB) *testenv.Kafka {
	tb.Helper()
	kafkaOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		start := time.Now()
		if kafka, kafkaErr = testenv.StartKafka(ctx); kafkaErr == nil {
			tb.Logf("Apache Kafka broker at %s ready after %s", kafka.Brokers()[0], time.Since(start).Round(time.Millisecond))
		}
	})
	testenv.SkipOrFailKafka(tb, kafkaErr)
	return kafka
}

// newDynamoStore creates a table (partition key "pk" of type S unless table says otherwise) and
// returns a store over it.
func newDynamoStore(tb testing.TB, table testenv.Table, opts ...DynamoOption) *DynamoStore {
	tb.Helper()
	m := motoServer(tb)
	if table.Name == "" {
		table.Name = testenv.UniqueName("t")
	}
	if table.Key == "" {
		table.Key = "pk"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(tb, testenv.CreateTable(ctx, m.DynamoDB(), table))
	opts = append([]DynamoOption{
		DynamoEndpoint(m.Endpoint()),
		DynamoRegion(testenv.MotoRegion),
		DynamoStaticCredentials(testenv.MotoAccessKey, testenv.MotoSecretKey),
	}, opts...)
	s, err := NewDynamoStore(ctx, table.Name, table.Key, opts...)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// key returns the i-th test key; string keys keep FerretDB fast.
func key(i int) string { return fmt.Sprintf("k%05d", i) }

// dynamoTable is the table of the conformance suite: partition key "pk" of type S.
func dynamoTable() testenv.Table { return testenv.Table{Key: "pk"} }
