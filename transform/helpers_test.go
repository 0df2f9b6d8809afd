package transform

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// D builds a document from alternating keys and values; a Go int becomes int32, as BSON
// would store a small literal.
func D(kv ...any) bson.D {
	d := make(bson.D, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		d = append(d, bson.E{Key: kv[i].(string), Value: lit(kv[i+1])})
	}
	return d
}

// A builds an array; a Go int becomes int32.
func A(vs ...any) bson.A {
	a := make(bson.A, len(vs))
	for i, v := range vs {
		a[i] = lit(v)
	}
	return a
}

func lit(v any) any {
	if n, ok := v.(int); ok {
		return int32(n)
	}
	return v
}

const testHeader = `name: t
source: {mongodb: {uri: "mongodb://h/", database: d, collection: a}}
target: {mongodb: {uri: "mongodb://h/", database: d, collection: b}}
`

// parseBody parses testHeader followed by body.
func parseBody(t testing.TB, body string) *Spec {
	t.Helper()
	s, err := Parse("t.yaml", []byte(testHeader+body))
	require.NoError(t, err)
	return s
}

// oneStep parses a spec whose only forward step is step (YAML flow mapping), with an empty
// explicit reverse so that irreversible steps parse too.
func oneStep(t testing.TB, step string) *Spec {
	t.Helper()
	return parseBody(t, "forward:\n  - "+step+"\nreverse: []\n")
}
