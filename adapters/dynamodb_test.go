package adapters

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tandemdb/tandem/testenv"
	"go.mongodb.org/mongo-driver/v2/bson"
)

func TestDynamoNumberKeysAndSortKey(t *testing.T) {
	ctx := testCtx(t)
	table := testenv.Table{Name: testenv.UniqueName("t"), Key: "id", KeyType: types.ScalarAttributeTypeN, Sort: "kind"}
	s := newDynamoStore(t, table, DynamoSortKey("kind", "user"))

	require.NoError(t, s.Upsert(ctx, bson.D{{Key: "name", Value: "ann"}, {Key: "id", Value: int64(5)}}))
	got, err := s.Get(ctx, int32(5))
	require.NoError(t, err)
	// The key first, the other fields sorted; no sort-key attribute; int64 5 reads as int32 5.
	assert.Equal(t, bson.D{{Key: "id", Value: int32(5)}, {Key: "name", Value: "ann"}}, got)

	k, err := s.KeyOf(bson.D{{Key: "id", Value: int64(5)}})
	require.NoError(t, err)
	assert.Equal(t, int32(5), k, "KeyOf gives the key as the store holds it")

	// Keys that DynamoDB takes as one are answered under each spelling.
	m, err := s.BatchGet(ctx, []Key{int64(5), 5.0, int32(6)})
	require.NoError(t, err)
	assert.Len(t, m, 2)
	assert.Contains(t, m, KeyString(int64(5)))
	assert.Contains(t, m, KeyString(5.0))

	// An item of another kind in the same table is not this store's.
	_, err = motoServer(t).DynamoDB().PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table.Name), Item: map[string]types.AttributeValue{
		"id": &types.AttributeValueMemberN{Value: "7"}, "kind": &types.AttributeValueMemberS{Value: "order"},
	}})
	require.NoError(t, err)
	_, err = s.Get(ctx, int32(7))
	assert.ErrorIs(t, err, ErrNotFound)
	docs := scanAll(t, s, 3)
	require.Len(t, docs, 1)
	assert.Equal(t, got, docs[0])

	err = s.Upsert(ctx, bson.D{{Key: "id", Value: int32(8)}, {Key: "kind", Value: "x"}})
	assert.ErrorIs(t, err, ErrUnsupportedValue, "a field named like the sort key")
}

func TestDynamoKeysMustBeScalar(t *testing.T) {
	ctx := testCtx(t)
	s := newDynamoStore(t, dynamoTable())
	for _, k := range []Key{bson.NewObjectID(), bson.D{{Key: "a", Value: 1}}, true} {
		err := s.Upsert(ctx, bson.D{{Key: "pk", Value: k}})
		assert.ErrorIs(t, err, ErrUnsupportedValue, "%T", k)
		_, err = s.Get(ctx, k)
		assert.ErrorIs(t, err, ErrUnsupportedValue, "%T", k)
	}
}

func TestDynamoUnsupportedValueNamesPathAndKey(t *testing.T) {
	s := newDynamoStore(t, dynamoTable())
	err := s.Upsert(testCtx(t), bson.D{{Key: "pk", Value: "k1"}, {Key: "a", Value: bson.D{{Key: "b", Value: bson.A{int32(1), bson.Regex{Pattern: "x"}}}}}})
	require.ErrorIs(t, err, ErrUnsupportedValue)
	assert.Contains(t, err.Error(), `field "a.b.1"`)
	assert.Contains(t, err.Error(), `"k1"`)
	assert.Contains(t, err.Error(), s.table)
}

func TestDynamoTooLargeNamesKeyAndSize(t *testing.T) {
	s := newDynamoStore(t, dynamoTable())
	doc := bson.D{{Key: "pk", Value: "big"}, {Key: "blob", Value: strings.Repeat("x", DynamoMaxItemSize)}}
	err := s.Upsert(testCtx(t), doc)
	require.ErrorIs(t, err, ErrItemTooLarge)
	// "pk"+"big" + "blob"+409600 bytes
	assert.Contains(t, err.Error(), fmt.Sprintf("item is %d bytes", 2+3+4+DynamoMaxItemSize))
	assert.Contains(t, err.Error(), `"big"`)

	// Exactly at the limit by DynamoDB's rules is allowed by the check (moto itself refuses
	// items this large by its own count, so this is not sent).
	atLimit := bson.D{{Key: "pk", Value: "big"}, {Key: "blob", Value: strings.Repeat("x", DynamoMaxItemSize-9)}}
	_, err = s.Normalize(atLimit)
	assert.NoError(t, err)
}

// flakyDynamo is a fake in front of the real (moto) client: its first `flaky` BatchWriteItem and
// BatchGetItem calls process only the first `keep` requests and return the rest as unprocessed,
// as DynamoDB does when throttled. moto never returns unprocessed items by itself.
type flakyDynamo struct {
	dynamoAPI
	mu         sync.Mutex
	flaky      int // calls left that leave requests unprocessed; -1: all
	keep       int
	writeCalls int
	getCalls   int
}

func (f *flakyDynamo) takeFlaky() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.flaky == 0 {
		return false
	}
	if f.flaky > 0 {
		f.flaky--
	}
	return true
}

func (f *flakyDynamo) BatchWriteItem(ctx context.Context, in *dynamodb.BatchWriteItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error) {
	f.mu.Lock()
	f.writeCalls++
	f.mu.Unlock()
	if !f.takeFlaky() {
		return f.dynamoAPI.BatchWriteItem(ctx, in, opts...)
	}
	for table, reqs := range in.RequestItems {
		keep := min(f.keep, len(reqs))
		out, err := f.dynamoAPI.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{table: reqs[:keep]},
		}, opts...)
		if err != nil {
			return nil, err
		}
		out.UnprocessedItems = map[string][]types.WriteRequest{table: reqs[keep:]}
		return out, nil
	}
	return &dynamodb.BatchWriteItemOutput{}, nil
}

func (f *flakyDynamo) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	f.mu.Lock()
	f.getCalls++
	f.mu.Unlock()
	if !f.takeFlaky() {
		return f.dynamoAPI.BatchGetItem(ctx, in, opts...)
	}
	for table, ka := range in.RequestItems {
		keep := min(f.keep, len(ka.Keys))
		sent := ka
		sent.Keys = ka.Keys[:keep]
		out, err := f.dynamoAPI.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
			RequestItems: map[string]types.KeysAndAttributes{table: sent},
		}, opts...)
		if err != nil {
			return nil, err
		}
		rest := ka
		rest.Keys = ka.Keys[keep:]
		out.UnprocessedKeys = map[string]types.KeysAndAttributes{table: rest}
		return out, nil
	}
	return &dynamodb.BatchGetItemOutput{}, nil
}

func TestDynamoRetriesUnprocessed(t *testing.T) {
	ctx := testCtx(t)
	s := newDynamoStore(t, dynamoTable(), DynamoRetries(6, time.Millisecond, 5*time.Millisecond), DynamoWriteConcurrency(1))
	fake := &flakyDynamo{dynamoAPI: s.api, flaky: 4, keep: 10}
	s.api = fake

	kit := storeKit{keyField: "pk"}
	ops := make([]WriteOp, 40) // two calls' worth: 25 + 15
	for i := range ops {
		ops[i] = WriteOp{Key: key(i), Doc: kit.doc(i)}
	}
	require.NoError(t, s.BulkWrite(ctx, ops))
	// 25 → 15 → 5 → done; 15 → 5 → done (the fifth call is no longer flaky)
	assert.Equal(t, 5, fake.writeCalls)
	assert.Len(t, scanAll(t, s, 1), 40)

	fake.flaky, fake.keep = 3, 30
	keys := make([]Key, 120)
	for i := range keys {
		keys[i] = key(i)
	}
	m, err := s.BatchGet(ctx, keys)
	require.NoError(t, err)
	assert.Len(t, m, 40)
	assert.Equal(t, 5, fake.getCalls, "100 → 70 left → 40 → 10 → done; then 20 → done")
}

func TestDynamoRetriesGiveUp(t *testing.T) {
	ctx := testCtx(t)
	s := newDynamoStore(t, dynamoTable(), DynamoRetries(3, time.Millisecond, 2*time.Millisecond), DynamoWriteConcurrency(1))
	fake := &flakyDynamo{dynamoAPI: s.api, flaky: -1, keep: 0}
	s.api = fake
	kit := storeKit{keyField: "pk"}
	ops := make([]WriteOp, 25)
	for i := range ops {
		ops[i] = WriteOp{Key: key(i), Doc: kit.doc(i)}
	}
	err := s.BulkWrite(ctx, ops)
	require.ErrorIs(t, err, ErrRetriesExhausted)
	assert.Contains(t, err.Error(), "25 of 25 items unprocessed after 3 attempts")
	assert.Equal(t, 3, fake.writeCalls)

	_, err = s.BatchGet(ctx, []Key{key(1), key(2)})
	require.ErrorIs(t, err, ErrRetriesExhausted)
	assert.Contains(t, err.Error(), "2 of 2 keys unprocessed after 3 attempts")
}

func TestDynamoBackoffHonoursContext(t *testing.T) {
	s := newDynamoStore(t, dynamoTable(), DynamoRetries(100, time.Hour, time.Hour))
	s.api = &flakyDynamo{dynamoAPI: s.api, flaky: -1, keep: 0}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.BulkWrite(ctx, []WriteOp{{Key: key(1), Doc: storeKit{keyField: "pk"}.doc(1)}})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 10*time.Second)
}

func TestDynamoPartitionsAreSegments(t *testing.T) {
	s := &DynamoStore{}
	ps, err := s.Partitions(context.Background(), 3)
	require.NoError(t, err)
	assert.Equal(t, []Partition{{Segment: 0, Segments: 3}, {Segment: 1, Segments: 3}, {Segment: 2, Segments: 3}}, ps)
	ps, err = s.Partitions(context.Background(), 0)
	require.NoError(t, err)
	assert.Equal(t, []Partition{{Segment: 0, Segments: 1}}, ps)
}

func TestDynamoNeedsRegion(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	_, err := NewDynamoStore(context.Background(), "t", "pk", DynamoStaticCredentials("a", "b"))
	assert.ErrorContains(t, err, "no region")
}

// TestDynamoAWSConfigReachesTheStream builds a DynamoDB Streams client from the store's
// AWSConfig, for a store that built its own client and for one given a client: both find the
// stream Provision enabled, on the same endpoint and with the same credentials.
func TestDynamoAWSConfigReachesTheStream(t *testing.T) {
	m := motoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	table := testenv.UniqueName("awscfg")
	own, err := NewDynamoStore(ctx, table, "pk", DynamoEndpoint(m.Endpoint()), DynamoRegion(testenv.MotoRegion),
		DynamoStaticCredentials(testenv.MotoAccessKey, testenv.MotoSecretKey))
	require.NoError(t, err)
	defer own.Close(ctx)
	_, err = own.Provision(ctx, Provisioning{})
	require.NoError(t, err)
	given, err := NewDynamoStore(ctx, table, "pk", DynamoClient(m.DynamoDB()))
	require.NoError(t, err)
	for name, s := range map[string]*DynamoStore{"own client": own, "given client": given} {
		cfg := s.AWSConfig()
		assert.Equal(t, testenv.MotoRegion, cfg.Region, name)
		require.NotNil(t, cfg.BaseEndpoint, name)
		assert.Equal(t, m.Endpoint(), *cfg.BaseEndpoint, name)
		out, err := dynamodbstreams.NewFromConfig(cfg).ListStreams(ctx, &dynamodbstreams.ListStreamsInput{TableName: aws.String(table)})
		require.NoError(t, err, name)
		require.Len(t, out.Streams, 1, name)
		assert.Equal(t, table, aws.ToString(out.Streams[0].TableName), name)
	}
}
