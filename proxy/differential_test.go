package proxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// step is one operation of the differential script; it returns a canonical rendering of the
// result (or of the error) that must be identical direct and through the proxy.
type step struct {
	name string
	run  func(ctx context.Context, db *mongo.Database) (any, error)
}

// outcome renders a result or an error, keeping what a client can observe: values, write
// error indexes and codes, and server error codes.
func outcome(v any, err error) string {
	if err != nil {
		var bwe mongo.BulkWriteException
		var we mongo.WriteException
		var ce mongo.CommandError
		switch {
		case errors.As(err, &bwe):
			var idx []string
			for _, e := range bwe.WriteErrors {
				idx = append(idx, fmt.Sprintf("%d:%d", e.Index, e.Code))
			}
			return fmt.Sprintf("bulk write error %v; result %s", idx, render(v))
		case errors.As(err, &we):
			var codes []int
			for _, e := range we.WriteErrors {
				codes = append(codes, e.Code)
			}
			return fmt.Sprintf("write error codes %v", codes)
		case errors.As(err, &ce):
			return fmt.Sprintf("command error code %d (%s)", ce.Code, ce.Name)
		default:
			return "error: " + err.Error()
		}
	}
	return render(v)
}

func render(v any) string {
	b, err := bson.MarshalExtJSON(bson.M{"v": v}, true, false)
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}

func findAll(ctx context.Context, coll *mongo.Collection, filter any, batch int32) ([]bson.D, error) {
	cur, err := coll.Find(ctx, filter, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}).SetBatchSize(batch))
	if err != nil {
		return nil, err
	}
	var out []bson.D
	err = cur.All(ctx, &out)
	return out, err
}

func differentialSteps() []step {
	big := bytes.Repeat([]byte("0123456789abcdef"), 2<<20/16) // a 2 MB document
	return []step{
		{"insert one", func(ctx context.Context, db *mongo.Database) (any, error) {
			return db.Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "n", Value: 1}, {Key: "tags", Value: bson.A{"x", "y"}}})
		}},
		{"insert many", func(ctx context.Context, db *mongo.Database) (any, error) {
			docs := make([]any, 30)
			for i := range docs {
				docs[i] = bson.D{{Key: "_id", Value: fmt.Sprintf("k%02d", i)}, {Key: "n", Value: int32(i)}, {Key: "grp", Value: int32(i % 3)}}
			}
			return db.Collection("c").InsertMany(ctx, docs)
		}},
		{"find with batchSize 4 (getMore)", func(ctx context.Context, db *mongo.Database) (any, error) {
			return findAll(ctx, db.Collection("c"), bson.D{}, 4)
		}},
		{"update one", func(ctx context.Context, db *mongo.Database) (any, error) {
			return db.Collection("c").UpdateOne(ctx, bson.D{{Key: "_id", Value: "k01"}}, bson.D{{Key: "$set", Value: bson.D{{Key: "x.y", Value: "z"}}}})
		}},
		{"update many", func(ctx context.Context, db *mongo.Database) (any, error) {
			return db.Collection("c").UpdateMany(ctx, bson.D{{Key: "grp", Value: 1}}, bson.D{{Key: "$inc", Value: bson.D{{Key: "n", Value: 100}}}})
		}},
		{"replace one", func(ctx context.Context, db *mongo.Database) (any, error) {
			return db.Collection("c").ReplaceOne(ctx, bson.D{{Key: "_id", Value: "k02"}}, bson.D{{Key: "replaced", Value: true}})
		}},
		{"delete one", func(ctx context.Context, db *mongo.Database) (any, error) {
			return db.Collection("c").DeleteOne(ctx, bson.D{{Key: "_id", Value: "k03"}})
		}},
		{"delete many", func(ctx context.Context, db *mongo.Database) (any, error) {
			return db.Collection("c").DeleteMany(ctx, bson.D{{Key: "grp", Value: 2}})
		}},
		{"findOneAndUpdate with upsert", func(ctx context.Context, db *mongo.Database) (any, error) {
			var out bson.D
			err := db.Collection("c").FindOneAndUpdate(ctx, bson.D{{Key: "_id", Value: "new"}},
				bson.D{{Key: "$set", Value: bson.D{{Key: "n", Value: 7}}}},
				options.FindOneAndUpdate().SetUpsert(true).SetReturnDocument(options.After)).Decode(&out)
			return out, err
		}},
		{"ordered bulk write hitting a duplicate key", func(ctx context.Context, db *mongo.Database) (any, error) {
			return db.Collection("c").BulkWrite(ctx, []mongo.WriteModel{
				mongo.NewInsertOneModel().SetDocument(bson.D{{Key: "_id", Value: "b1"}}),
				mongo.NewInsertOneModel().SetDocument(bson.D{{Key: "_id", Value: "a"}}),
				mongo.NewInsertOneModel().SetDocument(bson.D{{Key: "_id", Value: "b2"}}),
			}, options.BulkWrite().SetOrdered(true))
		}},
		{"unordered bulk write hitting a duplicate key", func(ctx context.Context, db *mongo.Database) (any, error) {
			return db.Collection("c").BulkWrite(ctx, []mongo.WriteModel{
				mongo.NewInsertOneModel().SetDocument(bson.D{{Key: "_id", Value: "u1"}}),
				mongo.NewInsertOneModel().SetDocument(bson.D{{Key: "_id", Value: "a"}}),
				mongo.NewInsertOneModel().SetDocument(bson.D{{Key: "_id", Value: "u2"}}),
			}, options.BulkWrite().SetOrdered(false))
		}},
		{"createIndexes", func(ctx context.Context, db *mongo.Database) (any, error) {
			return db.Collection("c").Indexes().CreateMany(ctx, []mongo.IndexModel{
				{Keys: bson.D{{Key: "grp", Value: 1}, {Key: "n", Value: -1}}, Options: options.Index().SetName("grp_n")},
				{Keys: bson.D{{Key: "tags", Value: 1}}, Options: options.Index().SetName("tags_sparse").SetSparse(true)},
			})
		}},
		{"listIndexes", func(ctx context.Context, db *mongo.Database) (any, error) {
			cur, err := db.Collection("c").Indexes().List(ctx)
			if err != nil {
				return nil, err
			}
			var out []bson.M
			if err := cur.All(ctx, &out); err != nil {
				return nil, err
			}
			var names []string
			for _, ix := range out {
				names = append(names, fmt.Sprint(ix["name"], ix["key"]))
			}
			sort.Strings(names)
			return names, nil
		}},
		{"aggregate", func(ctx context.Context, db *mongo.Database) (any, error) {
			cur, err := db.Collection("c").Aggregate(ctx, mongo.Pipeline{
				{{Key: "$match", Value: bson.D{{Key: "n", Value: bson.D{{Key: "$gte", Value: 0}}}}}},
				{{Key: "$group", Value: bson.D{{Key: "_id", Value: "$grp"}, {Key: "total", Value: bson.D{{Key: "$sum", Value: "$n"}}}}}},
				{{Key: "$sort", Value: bson.D{{Key: "_id", Value: 1}}}},
			})
			if err != nil {
				return nil, err
			}
			var out []bson.D
			err = cur.All(ctx, &out)
			return out, err
		}},
		{"count", func(ctx context.Context, db *mongo.Database) (any, error) {
			var out bson.M
			err := db.RunCommand(ctx, bson.D{{Key: "count", Value: "c"}, {Key: "query", Value: bson.D{{Key: "grp", Value: 0}}}}).Decode(&out)
			return out["n"], err
		}},
		{"countDocuments", func(ctx context.Context, db *mongo.Database) (any, error) {
			return db.Collection("c").CountDocuments(ctx, bson.D{})
		}},
		{"listCollections", func(ctx context.Context, db *mongo.Database) (any, error) {
			if err := db.Collection("other").Drop(ctx); err != nil {
				return nil, err
			}
			if _, err := db.Collection("other").InsertOne(ctx, bson.D{{Key: "_id", Value: "o"}}); err != nil {
				return nil, err
			}
			names, err := db.ListCollectionNames(ctx, bson.D{})
			sort.Strings(names)
			return names, err
		}},
		{"2 MB document", func(ctx context.Context, db *mongo.Database) (any, error) {
			if _, err := db.Collection("big").InsertOne(ctx, bson.D{{Key: "_id", Value: "big"}, {Key: "blob", Value: big}}); err != nil {
				return nil, err
			}
			var out struct {
				Blob []byte `bson:"blob"`
			}
			if err := db.Collection("big").FindOne(ctx, bson.D{{Key: "_id", Value: "big"}}).Decode(&out); err != nil {
				return nil, err
			}
			return fmt.Sprintf("%d bytes sha256 %x", len(out.Blob), sha256.Sum256(out.Blob)), nil
		}},
		{"duplicate key on insert one", func(ctx context.Context, db *mongo.Database) (any, error) {
			return db.Collection("c").InsertOne(ctx, bson.D{{Key: "_id", Value: "a"}})
		}},
		{"unknown command", func(ctx context.Context, db *mongo.Database) (any, error) {
			var out bson.M
			err := db.RunCommand(ctx, bson.D{{Key: "noSuchCommandAnywhere", Value: 1}}).Decode(&out)
			return out, err
		}},
		{"final state", func(ctx context.Context, db *mongo.Database) (any, error) {
			return findAll(ctx, db.Collection("c"), bson.D{}, 7)
		}},
	}
}

// TestDifferentialAgainstFerretDB runs the same script direct to FerretDB and through the proxy,
// on a fresh database each time, and requires identical results and error codes at every step.
func TestDifferentialAgainstFerretDB(t *testing.T) {
	p := serveProxy(t, ferret.URI())
	direct := connect(t, ferret.URI())
	proxied := connect(t, p.uri)

	run := func(client *mongo.Client) []string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		db := client.Database("differential")
		require.NoError(t, db.Drop(ctx))
		var out []string
		for _, s := range differentialSteps() {
			v, err := s.run(ctx, db)
			out = append(out, s.name+": "+outcome(v, err))
		}
		require.NoError(t, db.Drop(ctx))
		return out
	}
	want := run(direct)
	got := run(proxied)
	require.Len(t, got, len(want))
	for i := range want {
		assert.Equal(t, want[i], got[i])
	}
	// The script must exercise what it claims: errors where errors belong.
	joined := fmt.Sprint(want)
	assert.Contains(t, joined, "ordered bulk write hitting a duplicate key: bulk write error [1:11000]")
	assert.Contains(t, joined, "unknown command: command error code 59")
	assert.Contains(t, joined, "2 MB document: {\"v\":\"2097152 bytes")

	assert.Greater(t, metric(t, p.registry, "tandem_proxy_requests_total", "command", "getMore"), 0.0)
	assert.Greater(t, metric(t, p.registry, "tandem_proxy_requests_total", "command", "insert"), 0.0)
	assert.Greater(t, metric(t, p.registry, "tandem_proxy_command_errors_total", "command", "other"), 0.0, "the unknown command's error is counted")
	assert.Greater(t, metric(t, p.registry, "tandem_proxy_request_duration_seconds", "command", "find"), 0.0)
	assert.Greater(t, metric(t, p.registry, "tandem_proxy_bytes_total", "direction", "upstream_to_client"), float64(2<<20))
}
