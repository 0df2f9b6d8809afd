package backfill_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/backfill"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/testenv"
	"github.com/tandemdb/tandem/transform"
)

// TestDynamoDBTarget copies a MongoDB collection to a DynamoDB table on moto that does not
// exist yet: the backfill creates it, copies every document, and dead-letters one over
// DynamoDB's 400 KB item limit with its key and size.
func TestDynamoDBTarget(t *testing.T) {
	if motoServer == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		m, err := testenv.StartMoto(ctx)
		cancel()
		testenv.SkipOrFail(t, err)
		motoServer = m
	}
	e := newEnv(t, "")
	e.seed(t, 200)
	ctx := context.Background()
	_, err := e.src.InsertOne(ctx, bson.D{{Key: "_id", Value: "u00050x"}, {Key: "name", Value: "big"}, {Key: "blob", Value: strings.Repeat("x", 500<<10)}})
	require.NoError(t, err)

	table := testenv.UniqueName("users_v2")
	spec, err := transform.Parse("spec.yaml", []byte(fmt.Sprintf(`name: %s
source: {mongodb: {uri: "mongodb://h/", database: %s, collection: users}}
target: {dynamodb: {table: %s, region: us-east-1, endpoint: "%s"}}
key: {partition: pk}
forward:
  - rename: {from: name, to: profile.name}
`, e.migration, e.db, table, motoServer.Endpoint())))
	require.NoError(t, err)
	dst, err := adapters.NewDynamoStore(ctx, table, "pk", adapters.DynamoEndpoint(motoServer.Endpoint()), adapters.DynamoRegion(testenv.MotoRegion),
		adapters.DynamoStaticCredentials(testenv.MotoAccessKey, testenv.MotoSecretKey))
	require.NoError(t, err)
	eng, err := shadow.NewEngine(shadow.Config{Migration: e.migration, SpecVersion: spec.Version, Old: e.old, New: dst,
		Forward: spec.Forward, Reverse: spec.Reverse, DeadLetters: e.cat, Log: quiet()})
	require.NoError(t, err)
	cfg := e.config()
	cfg.Spec, cfg.New = spec, dst
	cfg.Reconverge = func(ctx context.Context, k adapters.Key) error {
		_, err := eng.Converge(ctx, k, shadow.Forward)
		return err
	}

	start := time.Now()
	sum, err := backfill.Run(ctx, cfg)
	require.NoError(t, err)
	t.Logf("copied %d documents to DynamoDB (moto) in %s", sum.Copied, time.Since(start).Round(time.Millisecond))
	assert.Equal(t, int64(200), sum.Copied)
	assert.Equal(t, int64(1), sum.DeadLettered)
	dls, err := e.cat.DeadLetters(ctx, e.migration, catalog.DeadLetterFilter{})
	require.NoError(t, err)
	require.Len(t, dls, 1)
	assert.Equal(t, `"u00050x"`, dls[0].KeyString)
	assert.Contains(t, dls[0].Reason, "over DynamoDB's limit of 409600")

	// Every document is in the table, transformed.
	got := map[string]bson.D{}
	require.NoError(t, dst.Scan(ctx, adapters.Partition{}, adapters.ScanOptions{}, func(docs []bson.D) error {
		for _, d := range docs {
			k, err := dst.KeyOf(d)
			require.NoError(t, err)
			got[adapters.KeyString(k)] = d
		}
		return nil
	}))
	assert.Len(t, got, 200)
	require.NoError(t, e.old.Scan(ctx, adapters.Partition{}, adapters.ScanOptions{}, func(docs []bson.D) error {
		for _, d := range docs {
			k, _ := e.old.KeyOf(d)
			if adapters.KeyString(k) == `"u00050x"` {
				continue
			}
			out, err := spec.Forward(d)
			require.NoError(t, err)
			want, err := dst.Normalize(out)
			require.NoError(t, err)
			assert.True(t, transform.Equal(want, got[adapters.KeyString(k)]), "key %v", k)
		}
		return nil
	}))

	// A second backfill of another migration into the now non-empty table is refused.
	cfg.Migration = e.migration + "b"
	_, err = backfill.Run(ctx, cfg)
	assert.ErrorIs(t, err, backfill.ErrTargetNotEmpty)
}
