package adapters

import (
	"context"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/testenv"
)

// TestDynamoItemKey: a stream record's key attributes decode to the key Get and KeyOf use; an
// item of another sort-key value is not the store's; a missing or mistyped key is an error
// naming the attribute.
func TestDynamoItemKey(t *testing.T) {
	client := dynamodb.New(dynamodb.Options{Region: "us-east-1"})
	plain, err := NewDynamoStore(context.Background(), "t", "pk", DynamoClient(client))
	require.NoError(t, err)
	sorted, err := NewDynamoStore(context.Background(), "t", "pk", DynamoClient(client), DynamoSortKey("sk", "v2"))
	require.NoError(t, err)
	assert.Equal(t, "t", plain.Table())
	n := func(s string) types.AttributeValue { return &types.AttributeValueMemberN{Value: s} }
	s := func(s string) types.AttributeValue { return &types.AttributeValueMemberS{Value: s} }
	cases := []struct {
		name  string
		store *DynamoStore
		keys  map[string]types.AttributeValue
		want  Key
		ours  bool
		err   string
	}{
		{"string", plain, map[string]types.AttributeValue{"pk": s("u1")}, "u1", true, ""},
		{"int32", plain, map[string]types.AttributeValue{"pk": n("5")}, int32(5), true, ""},
		{"int64", plain, map[string]types.AttributeValue{"pk": n("1099511627776")}, int64(1099511627776), true, ""},
		{"binary", plain, map[string]types.AttributeValue{"pk": &types.AttributeValueMemberB{Value: []byte{1}}}, bson.Binary{Data: []byte{1}}, true, ""},
		{"our sort key", sorted, map[string]types.AttributeValue{"pk": s("u1"), "sk": s("v2")}, "u1", true, ""},
		{"another sort key", sorted, map[string]types.AttributeValue{"pk": s("u1"), "sk": s("v1")}, nil, false, ""},
		{"no partition key", plain, map[string]types.AttributeValue{"id": s("u1")}, nil, false, `no attribute "pk"`},
		{"no sort key", sorted, map[string]types.AttributeValue{"pk": s("u1")}, nil, false, `no sort key attribute "sk"`},
		{"not a key type", plain, map[string]types.AttributeValue{"pk": &types.AttributeValueMemberBOOL{Value: true}}, nil, false, `attribute "pk" is a`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, ours, err := tc.store.ItemKey(tc.keys)
			if tc.err != "" {
				assert.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, k)
			assert.Equal(t, tc.ours, ours)
			if ours {
				kv, err := tc.store.KeyOf(bson.D{{Key: "pk", Value: k}})
				require.NoError(t, err)
				assert.Equal(t, kv, k, "the key KeyOf gives")
			}
		})
	}
}

// TestDynamoProvisionStream: a table Provision creates has a KEYS_ONLY stream, for the reverse
// path.
func TestDynamoProvisionStream(t *testing.T) {
	m := motoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := testenv.UniqueName("provstream")
	s, err := NewDynamoStore(ctx, name, "pk", DynamoClient(m.DynamoDB()))
	require.NoError(t, err)
	created, err := s.Provision(ctx, Provisioning{})
	require.NoError(t, err)
	require.True(t, created)
	out, err := m.DynamoDB().DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	require.NoError(t, err)
	require.NotNil(t, out.Table.StreamSpecification)
	assert.True(t, aws.ToBool(out.Table.StreamSpecification.StreamEnabled))
	assert.Equal(t, types.StreamViewTypeKeysOnly, out.Table.StreamSpecification.StreamViewType)
	assert.NotEmpty(t, aws.ToString(out.Table.LatestStreamArn))
}
