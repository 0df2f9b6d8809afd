package adapters

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// FilterHash is what operators match log lines by, across versions too: its values are pinned.
func TestFilterHash(t *testing.T) {
	for _, tc := range []struct {
		name   string
		filter bson.Raw
		want   string
	}{
		{"a filter", mustMarshal(t, bson.D{{Key: "status", Value: "vip"}}), "6e3ed3dfc90da487"},
		{"the empty document", mustMarshal(t, bson.D{}), "49e8e3297545c15a"},
		{"no filter", nil, "e3b0c44298fc1c14"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, FilterHash(tc.filter))
		})
	}
	a, b := mustMarshal(t, bson.D{{Key: "a", Value: 1}, {Key: "b", Value: 2}}), mustMarshal(t, bson.D{{Key: "b", Value: 2}, {Key: "a", Value: 1}})
	assert.NotEqual(t, FilterHash(a), FilterHash(b), "the bytes are hashed: field order counts")
}
