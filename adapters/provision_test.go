package adapters

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/testenv"
)

func TestMongoProvision(t *testing.T) {
	ctx := context.Background()
	s := newMongoStore(t)
	ok, err := s.Exists(ctx)
	require.NoError(t, err)
	assert.False(t, ok)

	ixs := []Index{{Keys: bson.D{{Key: "email", Value: int32(1)}}, Unique: true}, {Name: "by_city", Keys: bson.D{{Key: "p.city", Value: int32(1)}, {Key: "age", Value: int32(-1)}}, Sparse: true}}
	created, err := s.Provision(ctx, Provisioning{Indexes: ixs})
	require.NoError(t, err)
	assert.True(t, created)
	created, err = s.Provision(ctx, Provisioning{Indexes: ixs})
	require.NoError(t, err)
	assert.False(t, created, "a second provision finds it")
	ok, err = s.Exists(ctx)
	require.NoError(t, err)
	assert.True(t, ok)

	specs, err := s.Collection().Indexes().ListSpecifications(ctx)
	require.NoError(t, err)
	names := map[string]bool{}
	for _, sp := range specs {
		names[sp.Name] = true
	}
	assert.True(t, names["email_1"] && names["by_city"], "indexes: %v", names)
	require.NoError(t, s.Upsert(ctx, bson.D{{Key: "_id", Value: "a"}, {Key: "email", Value: "x"}}))
	assert.Error(t, s.Upsert(ctx, bson.D{{Key: "_id", Value: "b"}, {Key: "email", Value: "x"}}), "the unique index holds")
}

func TestDynamoProvision(t *testing.T) {
	m := motoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := NewDynamoStore(ctx, testenv.UniqueName("prov"), "pk", DynamoEndpoint(m.Endpoint()), DynamoRegion(testenv.MotoRegion),
		DynamoStaticCredentials(testenv.MotoAccessKey, testenv.MotoSecretKey), DynamoSortKey("sk", int32(1)))
	require.NoError(t, err)
	ok, err := s.Exists(ctx)
	require.NoError(t, err)
	assert.False(t, ok)
	_, err = s.Provision(ctx, Provisioning{Indexes: []Index{{Keys: bson.D{{Key: "a", Value: 1}}}}})
	assert.ErrorContains(t, err, "not supported")
	_, err = s.Provision(ctx, Provisioning{KeyType: "X"})
	assert.ErrorContains(t, err, "want S, N or B")

	created, err := s.Provision(ctx, Provisioning{KeyType: "N"})
	require.NoError(t, err)
	assert.True(t, created)
	created, err = s.Provision(ctx, Provisioning{KeyType: "N"})
	require.NoError(t, err)
	assert.False(t, created)
	require.NoError(t, s.Upsert(ctx, bson.D{{Key: "pk", Value: int32(7)}, {Key: "v", Value: "x"}}))
	got, err := s.Get(ctx, int32(7))
	require.NoError(t, err)
	assert.Equal(t, bson.D{{Key: "pk", Value: int32(7)}, {Key: "v", Value: "x"}}, got)
	assert.Error(t, s.Upsert(ctx, bson.D{{Key: "pk", Value: "str"}}), "the table's key is a number")
}
