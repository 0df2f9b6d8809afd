package transform

import (
	"fmt"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// benchSpec has the five step kinds a typical migration uses; its reverse is derived.
const benchSpec = `forward:
  - rename: {from: name, to: full_name}
  - move: {from: email, to: contact.email}
  - convert: {path: age, from: int32, to: int64}
  - set: {path: schema_version, value: 2}
  - compute: {path: email_domain, expr: 'doc.contact.email.split("@")[1]'}
`

// benchDoc returns a 20-field document like a user profile: scalars of several types, one
// embedded document and one array.
func benchDoc() bson.D {
	d := bson.D{
		{Key: "_id", Value: bson.NewObjectIDFromTimestamp(time.Unix(1700000000, 0))},
		{Key: "name", Value: "User 1"},
		{Key: "email", Value: "user1@example.com"},
		{Key: "age", Value: int32(42)},
		{Key: "created", Value: bson.NewDateTimeFromTime(time.Unix(1700000000, 0))},
		{Key: "active", Value: true},
		{Key: "score", Value: 3.25},
		{Key: "address", Value: bson.D{{Key: "city", Value: "Lyon"}, {Key: "zip", Value: "69001"}}},
		{Key: "tags", Value: bson.A{"a", "b", "c"}},
	}
	for i := len(d); i < 20; i++ {
		d = append(d, bson.E{Key: fmt.Sprintf("extra%02d", i), Value: fmt.Sprintf("value %d", i)})
	}
	return d
}

func BenchmarkForward(b *testing.B) {
	spec := parseBody(b, benchSpec)
	doc := benchDoc()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := spec.Forward(doc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
}

func BenchmarkReverse(b *testing.B) {
	spec := parseBody(b, benchSpec)
	doc, err := spec.Forward(benchDoc())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := spec.Reverse(doc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
}

// BenchmarkForwardNoCompute shows what the CEL step costs: the same spec without compute.
func BenchmarkForwardNoCompute(b *testing.B) {
	spec := parseBody(b, benchSpec[:len(benchSpec)-len(`  - compute: {path: email_domain, expr: 'doc.contact.email.split("@")[1]'}`)-1])
	doc := benchDoc()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := spec.Forward(doc); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
}
