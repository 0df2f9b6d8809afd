package cdc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/shadow"
)

// benchDocs is how many changes each benchmark iteration applies.
const benchDocs = 2000

// seedStream inserts benchDocs documents into coll in batches.
func seedStream(b *testing.B, coll *mongo.Collection, prefix string) {
	b.Helper()
	docs := make([]any, 0, 100)
	for i := range benchDocs {
		docs = append(docs, oldDoc(fmt.Sprintf("%s%05d", prefix, i), int32(i%90)))
		if len(docs) == cap(docs) {
			if _, err := coll.InsertMany(context.Background(), docs); err != nil {
				b.Fatal(err)
			}
			docs = docs[:0]
		}
	}
}

// BenchmarkChangeStreamTailer measures the tailer's apply rate: benchDocs inserts straight into
// old, then the time until new holds them all through the change stream (changes/s reported).
// Compare with BenchmarkChangeStreamRawLoop in the same run.
func BenchmarkChangeStreamTailer(b *testing.B) {
	for i := 0; i < b.N; i++ {
		f := newCSFixture(b)
		tl := f.tailer(b, shadow.Forward)
		ctx, cancel := context.WithCancel(context.Background())
		if _, err := tl.Prepare(ctx); err != nil {
			b.Fatal(err)
		}
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- tl.Run(ctx) }()
		seedStream(b, f.oldColl, "t")
		waitCount(b, f.newColl, benchDocs)
		b.ReportMetric(benchDocs/time.Since(start).Seconds(), "changes/s")
		cancel()
		<-done
	}
}

// BenchmarkChangeStreamRawLoop is the reference: a loop that reads the same stream with the
// whole document (fullDocument) and upserts each transformed document, one at a time.
func BenchmarkChangeStreamRawLoop(b *testing.B) {
	for i := 0; i < b.N; i++ {
		f := newCSFixture(b)
		ctx, cancel := context.WithCancel(context.Background())
		cs, err := f.oldColl.Watch(ctx, mongo.Pipeline{})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		start := time.Now()
		go func() {
			defer close(done)
			for cs.Next(ctx) {
				var ev struct {
					Full bson.D `bson:"fullDocument"`
				}
				if cs.Decode(&ev) != nil || ev.Full == nil {
					continue
				}
				out, err := f.spec.Forward(ev.Full)
				if err != nil {
					continue
				}
				_, _ = f.newColl.ReplaceOne(ctx, bson.D{{Key: "_id", Value: out[0].Value}}, out, options.Replace().SetUpsert(true))
			}
		}()
		seedStream(b, f.oldColl, "r")
		waitCount(b, f.newColl, benchDocs)
		b.ReportMetric(benchDocs/time.Since(start).Seconds(), "changes/s")
		cancel()
		<-done
		_ = cs.Close(context.Background())
	}
}

func waitCount(b *testing.B, coll *mongo.Collection, n int64) {
	b.Helper()
	limit := time.Now().Add(5 * time.Minute)
	for {
		c, err := coll.CountDocuments(context.Background(), bson.D{})
		if err == nil && c >= n {
			return
		}
		if time.Now().After(limit) {
			b.Fatalf("%d of %d documents after 5 minutes", c, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
