package flags_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/testenv"
)

var client *mongo.Client

func TestMain(m *testing.M) { testenv.MongoMain(m, &client) }

var dbSeq atomic.Int64

// newCatalog returns a catalog in a database of its own.
func newCatalog(t testing.TB, opts ...catalog.Option) *catalog.Catalog {
	t.Helper()
	name := fmt.Sprintf("tandem_flags_test_%d", dbSeq.Add(1))
	c, err := catalog.Open(context.Background(), client, append([]catalog.Option{catalog.WithDatabase(name)}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Database(name).Drop(context.Background()) })
	return c
}

// register creates a migration (in phase off).
func register(t testing.TB, c *catalog.Catalog, migration string) {
	t.Helper()
	_, err := c.RegisterSpec(context.Background(), migration, "v1", "name: "+migration, "test")
	require.NoError(t, err)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, deadline time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > deadline {
			t.Fatalf("%s: not within %s", what, deadline)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}
