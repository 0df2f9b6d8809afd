package adapters

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestKeyStringDistinguishesTypes(t *testing.T) {
	oid := bson.NewObjectID()
	keys := []Key{"1", int32(1), int64(1), 1.0, oid, oid.Hex()}
	seen := map[string]Key{}
	for _, k := range keys {
		s := KeyString(k)
		prev, dup := seen[s]
		assert.False(t, dup, "%v (%T) and %v (%T) render alike: %s", k, k, prev, prev, s)
		seen[s] = k
	}
	assert.Equal(t, `"u1"`, KeyString("u1"))
	assert.Equal(t, `{"$numberInt":"7"}`, KeyString(int32(7)))
}
