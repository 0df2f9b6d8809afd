package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/embedmongo"
)

// MongoMain runs a test binary's tests against one embedded FerretDB: it starts it, connects
// *client to it, runs m, calls each of after (to stop other servers the tests started),
// disconnects, stops it, and exits with m's status (1 when FerretDB cannot start). Call it from
// TestMain.
func MongoMain(m *testing.M, client **mongo.Client, after ...func()) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	store, err := embedmongo.Start(ctx, embedmongo.Options{})
	cancel()
	if err != nil {
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
	os.Exit(code)
}
