package verify_test

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
	"github.com/tandemdb/tandem/verify"
)

// TestDynamoDBTarget verifies MongoDB → DynamoDB (moto) with each plan that can (the
// default join, and look-ups): documents are compared through the table's value mapping (one
// number type, no int32), segments are scanned for extra items.
func TestDynamoDBTarget(t *testing.T) {
	moto := testenv.StartMotoT(t)
	for name, plan := range map[string]string{"auto": verify.PlanAuto, "lookup": verify.PlanLookup} {
		t.Run(name, func(t *testing.T) { testDynamoDBTarget(t, moto, plan) })
	}
	t.Run("merge is refused", func(t *testing.T) {
		f := newFixture(t)
		dyn, err := adapters.NewDynamoStore(context.Background(), "no-such-table", "pk", adapters.DynamoClient(moto.DynamoDB()))
		require.NoError(t, err)
		f.new = dyn
		cfg := f.config()
		cfg.Plan = verify.PlanMerge
		_, err = verify.Run(context.Background(), cfg)
		require.ErrorIs(t, err, verify.ErrInvalidConfig)
		assert.ErrorContains(t, err, `Plan "merge" needs two MongoDB collections keyed by _id`)
	})
}

func testDynamoDBTarget(t *testing.T, moto *testenv.Moto, plan string) {
	ctx := context.Background()
	table := testenv.UniqueName("users_v2")
	require.NoError(t, testenv.CreateTable(ctx, moto.DynamoDB(), testenv.Table{Name: table, Key: "pk"}))
	dyn, err := adapters.NewDynamoStore(ctx, table, "pk", adapters.DynamoClient(moto.DynamoDB()))
	require.NoError(t, err)
	spec, err := transform.Parse("users-dyn.yaml", []byte(`name: users-dyn
source:
  mongodb: {uri: "mongodb://unused/", database: d, collection: users}
target:
  dynamodb: {table: `+table+`, region: us-east-1}
key:
  source: _id
  partition: pk
forward:
  - compute: {path: email_domain, expr: 'doc.email.split("@")[1]'}
  - rename: {from: name, to: profile.full_name}
  - move: {from: email, to: profile.email}
  - convert: {path: age, from: int32, to: int64}
  - convert: {path: created, from: date, to: string}
  - set: {path: schema_version, value: 2}
`))
	require.NoError(t, err)

	f := newFixture(t)
	f.new, f.spec = dyn, spec
	const n = 25
	var olds, news []adapters.WriteOp
	for i := range n {
		olds = append(olds, adapters.WriteOp{Key: userID(i), Doc: user(i)})
		news = append(news, adapters.WriteOp{Key: userID(i), Doc: f.forward(t, user(i))})
	}
	require.NoError(t, f.old.BulkWrite(ctx, olds))
	require.NoError(t, dyn.BulkWrite(ctx, news))

	config := func() verify.Config {
		cfg := f.config()
		cfg.Plan, cfg.SpillDir = plan, t.TempDir()
		return cfg
	}
	sum, err := verify.Run(ctx, config())
	require.NoError(t, err)
	assert.True(t, sum.Clean, "%+v", sum)
	assert.Equal(t, int64(n), sum.Keys)
	assert.Zero(t, sum.Rechecked, "int64 and int32 values compare as the table returns them")
	st, err := f.cat.VerifyState(ctx, migration)
	require.NoError(t, err)
	var stores []string
	for _, p := range st.Partitions {
		stores = append(stores, p.Store)
	}
	if plan == verify.PlanAuto {
		assert.Contains(t, stores, catalog.StoreJoin, "a table and a collection are joined")
		assert.NotContains(t, stores, catalog.StoreBoth)
	} else {
		assert.NotContains(t, stores, catalog.StoreJoin)
	}

	wrong := setField(f.forward(t, user(5)), "email_domain", "example.org")
	require.NoError(t, dyn.Upsert(ctx, wrong))
	require.NoError(t, dyn.Delete(ctx, userID(6)))
	require.NoError(t, dyn.Upsert(ctx, f.forward(t, user(700))))
	cfg := config()
	cfg.Repair = f.convergeForward
	sum, err = verify.Run(ctx, cfg)
	require.NoError(t, err)
	assert.False(t, sum.Clean)
	assert.Equal(t, catalog.VerifySummary{Differing: 1, Missing: 1, Extra: 1, Repaired: 3},
		catalog.VerifySummary{Differing: sum.Differing, Missing: sum.Missing, Extra: sum.Extra, Repaired: sum.Repaired})
	assert.Equal(t, int64(n+1), sum.Keys)
	mm, err := f.cat.Mismatches(ctx, migration, 0)
	require.NoError(t, err)
	got := byKey(t, mm)
	assert.Equal(t, []string{`email_domain: want string "example.com", got string "example.org"`}, got[userID(5)].Diff)
	assert.Equal(t, []string{"missing in the new store"}, got[userID(6)].Diff)
	assert.Contains(t, got, userID(700))

	sum, err = verify.Run(ctx, config())
	require.NoError(t, err)
	assert.True(t, sum.Clean, "repaired: %+v", sum)
	assert.Equal(t, int64(n), sum.Keys)
}

// TestDynamoDBIndexCheck: the spec's required indexes of a DynamoDB target are global
// secondary indexes, compared by name and key attributes with the table's (moto).
func TestDynamoDBIndexCheck(t *testing.T) {
	moto := testenv.StartMotoT(t)
	ctx := context.Background()
	table := testenv.UniqueName("users_gsi")
	api := moto.DynamoDB()
	_, err := api.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:   aws.String(table),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("email_domain"), AttributeType: types.ScalarAttributeTypeS},
		},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName:  aws.String("by_domain"),
			KeySchema:  []types.KeySchemaElement{{AttributeName: aws.String("email_domain"), KeyType: types.KeyTypeHash}},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll},
		}},
	})
	require.NoError(t, err)
	dyn, err := adapters.NewDynamoStore(ctx, table, "pk", adapters.DynamoClient(api))
	require.NoError(t, err)
	have, err := dyn.Indexes(ctx)
	require.NoError(t, err)
	require.Len(t, have, 2)
	assert.True(t, have[0].Primary)
	assert.Equal(t, "pk", have[0].Keys[0].Key)
	assert.Equal(t, "by_domain", have[1].Name)

	spec, err := transform.Parse("users-dyn.yaml", []byte(`name: users-dyn
source:
  mongodb: {uri: "mongodb://unused/", database: d, collection: users}
target:
  dynamodb: {table: `+table+`, region: us-east-1}
key: {source: _id, partition: pk}
forward:
  - compute: {path: email_domain, expr: 'doc.email.split("@")[1]'}
verify:
  indexes:
    - {name: by_domain, keys: {email_domain: 1}}
    - {name: by_age, keys: {age: 1}}
`))
	require.NoError(t, err)
	f := newFixture(t)
	f.new, f.spec = dyn, spec
	cfg := f.config()
	cfg.Indexes = spec.RequiredIndexes()
	_, err = verify.Run(ctx, cfg)
	require.NoError(t, err)
	got := f.found(t)
	require.Len(t, got, 1)
	for _, m := range got {
		assert.Equal(t, catalog.KindIndexMissing, m.Kind)
		assert.Contains(t, m.Detail, "by_age")
	}
}
