package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// MongoMain runs a test binary's tests against one embedded FerretDB (StartMongo: a process of
// its own under make test): it starts it, connects *client to it, runs m, calls each of after
// (to stop other servers the tests started), disconnects, stops it, and exits with m's status
// (1 when FerretDB cannot start). Call it from TestMain.
func MongoMain(m *testing.M, client **mongo.Client, after ...func()) {
	dir, err := os.MkdirTemp("", "tandem-test-ferretdb-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "making the test server's folder:", err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	store, err := StartMongo(ctx, dir, "")
	cancel()
	if err != nil {
		_ = os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, "starting embedded FerretDB:", err)
		os.Exit(1)
	}
	c, err := mongo.Connect(options.Client().ApplyURI(store.URI()))
	if err != nil {
		store.Stop()
		fmt.Fprintln(os.Stderr, "connecting to embedded FerretDB:", err)
		os.Exit(1)
	}
	*client = c
	code := m.Run()
	for _, f := range after {
		f()
	}
	_ = c.Disconnect(context.Background())
	store.Stop()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
