package adapters

import (
	"context"
	"fmt"
	"testing"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// benchDoc is a typical document: a dozen fields, one nested document and one array.
func benchDoc(keyField string, i int) bson.D {
	return bson.D{
		{Key: keyField, Value: fmt.Sprintf("user%07d", i)},
		{Key: "name", Value: "Ann Example"},
		{Key: "email", Value: "ann@example.com"},
		{Key: "age", Value: int32(41)},
		{Key: "score", Value: 1234.5},
		{Key: "active", Value: true},
		{Key: "created", Value: bson.DateTime(1700000000000)},
		{Key: "ref", Value: bson.ObjectID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
		{Key: "address", Value: bson.D{{Key: "street", Value: "1 Main St"}, {Key: "city", Value: "Springfield"}, {Key: "zip", Value: "12345"}}},
		{Key: "tags", Value: bson.A{"a", "b", "c"}},
		{Key: "visits", Value: int64(1) << 33},
	}
}

// The store benchmarks keep rewriting the same 1000 keys, so the table or collection stays small.
const benchKeys = 1000

func BenchmarkUpsertMongo(b *testing.B) {
	s := newMongoStore(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := s.Upsert(ctx, benchDoc("_id", i%benchKeys)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func benchBulk(b *testing.B, s Store, keyField string) {
	ctx := context.Background()
	const batch = 100
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ops := make([]WriteOp, batch)
		for j := range ops {
			ops[j] = WriteOp{Doc: benchDoc(keyField, (i*batch+j)%benchKeys)}
		}
		if err := s.BulkWrite(ctx, ops); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "docs/s")
}

func BenchmarkBulkWriteMongo(b *testing.B) {
	benchBulk(b, newMongoStore(b), "_id")
}

func BenchmarkBulkWriteDynamo(b *testing.B) {
	benchBulk(b, newDynamoStore(b, dynamoTable()), "pk")
}

// BenchmarkMarshalItem and BenchmarkUnmarshalItem measure the mapping alone.
func BenchmarkMarshalItem(b *testing.B) {
	d := benchDoc("pk", 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := MarshalItem(d); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalItem(b *testing.B) {
	item, err := MarshalItem(benchDoc("pk", 1))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := UnmarshalItem(item); err != nil {
			b.Fatal(err)
		}
	}
}
