package testenv_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/testenv"
)

// event is what these tests read of a change event.
type event struct {
	Op  string `bson:"operationType"`
	Key bson.D `bson:"documentKey"`
	NS  struct {
		DB   string `bson:"db"`
		Coll string `bson:"coll"`
	} `bson:"ns"`
	ClusterTime bson.Timestamp `bson:"clusterTime"`
	Full        bson.M         `bson:"fullDocument"`
}

// next reads n events from cs, failing the test when they do not come within 30 s.
func next(t *testing.T, ctx context.Context, cs *mongo.ChangeStream, n int) []event {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out []event
	for len(out) < n {
		if !cs.Next(ctx) {
			t.Fatalf("after %d of %d events: %v", len(out), n, cs.Err())
		}
		var e event
		require.NoError(t, cs.Decode(&e))
		out = append(out, e)
	}
	return out
}

// TestMongoJavaEvents checks that the launcher's server records what MongoDB records for every
// write the change-stream tests make, with documentKey {_id} each time: the fixes the README's
// test section lists.
func TestMongoJavaEvents(t *testing.T) {
	srv := testenv.StartMongoJavaT(t, testenv.MongoJavaOptions{})
	ctx := context.Background()
	c, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	require.NoError(t, err)
	defer func() { _ = c.Disconnect(ctx) }()
	coll := c.Database("app").Collection("users")
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "seed"}})
	require.NoError(t, err)

	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	defer cs.Close(ctx)

	type step struct {
		name  string
		write func() error
		want  []string // operationType and key of each event
	}
	upsertNew := options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)
	steps := []step{
		{"insert", func() error {
			_, err := coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: 1}})
			return err
		}, []string{"insert a"}},
		{"updateOne", func() error {
			_, err := coll.UpdateOne(ctx, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 2}}}})
			return err
		}, []string{"update a"}},
		{"replaceOne", func() error {
			_, err := coll.ReplaceOne(ctx, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "m", Value: 3}})
			return err
		}, []string{"replace a"}},
		{"findOneAndUpdate", func() error {
			return coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "a"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 4}}}}).Err()
		}, []string{"update a"}},
		{"findOneAndUpdate upsert", func() error {
			return coll.FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "b"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 1}}}}, upsertNew).Err()
		}, []string{"insert b"}},
		{"findOneAndReplace", func() error {
			return coll.FindOneAndReplace(ctx, bson.D{{Key: "_id", Value: "b"}}, bson.D{{Key: "r", Value: true}}).Err()
		}, []string{"replace b"}},
		{"updateMany", func() error {
			_, err := coll.UpdateMany(ctx, bson.D{}, bson.D{{Key: "$set", Value: bson.D{{Key: "all", Value: true}}}})
			return err
		}, []string{"update seed", "update a", "update b"}},
		{"findOneAndDelete", func() error { return coll.FindOneAndDelete(ctx, bson.D{{Key: "_id", Value: "b"}}).Err() }, []string{"delete b"}},
		{"deleteMany", func() error { _, err := coll.DeleteMany(ctx, bson.D{}); return err }, []string{"delete seed", "delete a"}},
		{"drop", func() error { return coll.Drop(ctx) }, []string{"drop", "invalidate"}},
	}
	var last bson.Timestamp
	for _, s := range steps {
		require.NoError(t, s.write(), s.name)
		got := next(t, ctx, cs, len(s.want))
		var descs []string
		for _, e := range got {
			desc := e.Op
			if len(e.Key) > 0 {
				require.Len(t, e.Key, 1, "%s: documentKey %v", s.name, e.Key)
				require.Equal(t, "_id", e.Key[0].Key, "%s: documentKey %v", s.name, e.Key)
				desc = fmt.Sprintf("%s %v", e.Op, e.Key[0].Value)
			}
			descs = append(descs, desc)
			if e.Op != "invalidate" {
				require.Equal(t, "app", e.NS.DB, s.name)
				require.Equal(t, "users", e.NS.Coll, s.name)
			}
			require.False(t, e.ClusterTime.Before(last), "%s: clusterTime went back", s.name)
			last = e.ClusterTime
		}
		// A multi-document write's events come in the server's storage order.
		require.ElementsMatch(t, s.want, descs, s.name)
	}
	// Nothing follows the invalidate: the stream is over.
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: "after-drop"}})
	require.NoError(t, err)
	require.False(t, cs.Next(tctx), "an event after invalidate")
}

// TestMongoJavaHistoryLost checks the launcher's trim: a stream resumed from before it fails
// with ChangeStreamHistoryLost, one started after it works.
func TestMongoJavaHistoryLost(t *testing.T) {
	srv := testenv.StartMongoJavaT(t, testenv.MongoJavaOptions{})
	ctx := context.Background()
	c, err := mongo.Connect(options.Client().ApplyURI(srv.URI()))
	require.NoError(t, err)
	defer func() { _ = c.Disconnect(ctx) }()
	coll := c.Database("app").Collection("users")

	cs, err := coll.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 1}})
	require.NoError(t, err)
	next(t, ctx, cs, 1)
	token := cs.ResumeToken()
	require.NoError(t, cs.Close(ctx))

	require.NoError(t, testenv.TrimOplog(ctx, c))
	_, err = coll.Watch(ctx, mongo.Pipeline{}, options.ChangeStream().SetResumeAfter(token))
	var se mongo.ServerError
	require.True(t, errors.As(err, &se), "resuming from before the trim: %v", err)
	require.True(t, se.HasErrorCode(286), "resuming from before the trim: %v", err)

	cs, err = coll.Watch(ctx, mongo.Pipeline{})
	require.NoError(t, err)
	defer cs.Close(ctx)
	_, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: 2}})
	require.NoError(t, err)
	require.Equal(t, "insert", next(t, ctx, cs, 1)[0].Op)
}
