package cdc_test

import (
	"context"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/shadow"
)

// TestChangeStreamRealMongoDB runs the forward and reverse write tests against a real MongoDB
// replica set, the reference for what mongo-java-server's launcher imitates, when
// TANDEM_MONGODB_URI names one. Without it the test is skipped and says what is not covered.
func TestChangeStreamRealMongoDB(t *testing.T) {
	uri := os.Getenv("TANDEM_MONGODB_URI")
	if uri == "" {
		t.Skip("NOT COVERED: change streams of a real MongoDB replica set (resume tokens, post-batch resume tokens, " +
			"maxAwaitTimeMS, real invalidate and ChangeStreamHistoryLost); set TANDEM_MONGODB_URI to a replica set to run them")
	}
	c, err := mongo.Connect(options.Client().ApplyURI(uri))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Disconnect(context.Background()) })
	f := newCSFixtureOn(t, c)
	start(t, f.tailer(t, shadow.Forward))
	writeEveryKind(t, f.oldColl, oldDoc, "name")
	eventuallyConverged(t, f.oldColl, f.newColl, f.spec.Forward)

	g := newCSFixtureOn(t, c)
	start(t, g.tailer(t, shadow.Reverse))
	writeEveryKind(t, g.newColl, newDoc, "profile.name")
	eventuallyConverged(t, g.newColl, g.oldColl, g.spec.Reverse)
}
