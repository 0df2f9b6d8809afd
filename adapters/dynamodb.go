package adapters

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// DynamoDB's limits that the store works within
// (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html).
const (
	// DynamoMaxItemSize is DynamoDB's item size limit, 400 KB, counted by ItemSize.
	DynamoMaxItemSize = 400 * 1024
	dynamoBatchGetMax = 100 // keys per BatchGetItem
	dynamoBatchPutMax = 25  // requests per BatchWriteItem
	dynamoMaxSegments = 1_000_000
)

// ErrRetriesExhausted means DynamoDB still returned unprocessed items or keys (throttling) after
// the store's last attempt; the error says how many were left. Nothing else failed: the same call
// can be retried later.
var ErrRetriesExhausted = errors.New("items left unprocessed after the last attempt")

// dynamoAPI is the part of *dynamodb.Client the store uses.
type dynamoAPI interface {
	GetItem(context.Context, *dynamodb.GetItemInput, ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	BatchGetItem(context.Context, *dynamodb.BatchGetItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error)
	PutItem(context.Context, *dynamodb.PutItemInput, ...func(*dynamodb.Options)) (*dynamodb.PutItemOutput, error)
	DeleteItem(context.Context, *dynamodb.DeleteItemInput, ...func(*dynamodb.Options)) (*dynamodb.DeleteItemOutput, error)
	BatchWriteItem(context.Context, *dynamodb.BatchWriteItemInput, ...func(*dynamodb.Options)) (*dynamodb.BatchWriteItemOutput, error)
	Scan(context.Context, *dynamodb.ScanInput, ...func(*dynamodb.Options)) (*dynamodb.ScanOutput, error)
	DescribeTable(context.Context, *dynamodb.DescribeTableInput, ...func(*dynamodb.Options)) (*dynamodb.DescribeTableOutput, error)
	CreateTable(context.Context, *dynamodb.CreateTableInput, ...func(*dynamodb.Options)) (*dynamodb.CreateTableOutput, error)
}

// DynamoStore is a Store over one DynamoDB table. The table's partition-key attribute holds the
// Store Key, and is the document's field of the same name; a table with a sort key is used with
// one constant sort-key value (DynamoSortKey), which the store adds on write and strips on read.
// Documents are mapped as the package doc says; Normalize applies that mapping.
type DynamoStore struct {
	api       dynamoAPI
	table     string
	keyAttr   string
	sortAttr  string               // "" when the table has no sort key
	sortValue types.AttributeValue // the constant sort-key value
	retry     dynamoRetry
	writers   int
	transport *http.Transport // built by the store, closed by Close; nil with DynamoClient
	awsCfg    aws.Config      // what the client was built from (see AWSConfig)
}

type dynamoRetry struct {
	attempts  int
	base, max time.Duration
}

type dynamoConfig struct {
	client     *dynamodb.Client
	endpoint   string
	region     string
	accessKey  string
	secretKey  string
	sortAttr   string
	sortValue  Key
	hasSortKey bool
	retry      dynamoRetry
	writers    int
}

// DynamoOption configures a DynamoStore.
type DynamoOption func(*dynamoConfig)

// DynamoSortKey says the table has a sort key attr, and that every document of this store is the
// item with sort-key value value (a string, number or binary subtype 0). Default: no sort key.
// With it, Scan filters on the value, and EstimateCount still counts every item of the table.
func DynamoSortKey(attr string, value Key) DynamoOption {
	return func(c *dynamoConfig) { c.sortAttr, c.sortValue, c.hasSortKey = attr, value, true }
}

// DynamoEndpoint sets the service endpoint (the client's BaseEndpoint), for example a moto server
// on http://127.0.0.1:PORT. Default: the AWS endpoint of the region.
func DynamoEndpoint(url string) DynamoOption { return func(c *dynamoConfig) { c.endpoint = url } }

// DynamoRegion sets the region. Default: the AWS SDK's (AWS_REGION, the shared config file).
func DynamoRegion(region string) DynamoOption { return func(c *dynamoConfig) { c.region = region } }

// DynamoStaticCredentials uses a fixed access key, as tests against moto do. Default: the AWS
// SDK's credential chain.
func DynamoStaticCredentials(accessKey, secretKey string) DynamoOption {
	return func(c *dynamoConfig) { c.accessKey, c.secretKey = accessKey, secretKey }
}

// DynamoClient uses client as it is, overriding DynamoEndpoint, DynamoRegion and
// DynamoStaticCredentials; Close then leaves its connections alone. Default: the store builds
// its own client.
func DynamoClient(client *dynamodb.Client) DynamoOption {
	return func(c *dynamoConfig) { c.client = client }
}

// DynamoRetries bounds the retries of unprocessed items and keys of BatchWriteItem and
// BatchGetItem: at most attempts calls per batch, sleeping a random time in [0, min(max,
// base·2^n)) before retry n ("full jitter"). Default: 10 attempts, base 50ms, max 5s. The AWS
// SDK's own retries of throttled calls come on top of these.
func DynamoRetries(attempts int, base, max time.Duration) DynamoOption {
	return func(c *dynamoConfig) { c.retry = dynamoRetry{attempts: attempts, base: base, max: max} }
}

// DynamoWriteConcurrency sets how many BatchWriteItem calls one BulkWrite has in flight.
// Default: 4.
func DynamoWriteConcurrency(n int) DynamoOption { return func(c *dynamoConfig) { c.writers = n } }

// NewDynamoStore returns a store over table, whose partition-key attribute is keyAttr. The
// table must exist before the store reads or writes it; Provision creates it.
func NewDynamoStore(ctx context.Context, table, keyAttr string, opts ...DynamoOption) (*DynamoStore, error) {
	cfg := dynamoConfig{retry: dynamoRetry{attempts: 10, base: 50 * time.Millisecond, max: 5 * time.Second}, writers: 4}
	for _, o := range opts {
		o(&cfg)
	}
	if table == "" || keyAttr == "" {
		return nil, errors.New("dynamodb: table and key attribute are required")
	}
	if strings.HasPrefix(keyAttr, "$") || strings.HasPrefix(cfg.sortAttr, "$") {
		return nil, fmt.Errorf("dynamodb %s: key attribute names must not start with $", table)
	}
	if cfg.retry.attempts < 1 {
		cfg.retry.attempts = 1
	}
	if cfg.writers < 1 {
		cfg.writers = 1
	}
	s := &DynamoStore{table: table, keyAttr: keyAttr, retry: cfg.retry, writers: cfg.writers}
	if cfg.hasSortKey {
		if cfg.sortAttr == "" || cfg.sortAttr == keyAttr {
			return nil, fmt.Errorf("dynamodb %s: sort key attribute %q is invalid", table, cfg.sortAttr)
		}
		av, err := keyAV(cfg.sortValue)
		if err != nil {
			return nil, fmt.Errorf("dynamodb %s: sort key value: %w", table, err)
		}
		s.sortAttr, s.sortValue = cfg.sortAttr, av
	}
	if cfg.client != nil {
		s.api = cfg.client
		o := cfg.client.Options()
		s.awsCfg = aws.Config{Region: o.Region, Credentials: o.Credentials, HTTPClient: o.HTTPClient, BaseEndpoint: o.BaseEndpoint}
		return s, nil
	}
	var loadOpts []func(*config.LoadOptions) error
	if cfg.region != "" {
		loadOpts = append(loadOpts, config.WithRegion(cfg.region))
	}
	if cfg.accessKey != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.accessKey, cfg.secretKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("dynamodb %s: loading AWS config: %w", table, err)
	}
	if awsCfg.Region == "" {
		return nil, fmt.Errorf("dynamodb %s: no region (use DynamoRegion or set AWS_REGION)", table)
	}
	// Keep the SDK's transport (with AWS_CA_BUNDLE and its timeouts applied) but own it, so that
	// Close can close its idle connections. Like the SDK's client, follow no redirects.
	if bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok {
		s.transport = bc.GetTransport()
		awsCfg.HTTPClient = &http.Client{
			Transport:     s.transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.endpoint != "" {
		awsCfg.BaseEndpoint = aws.String(cfg.endpoint)
	}
	s.awsCfg = awsCfg
	s.api = dynamodb.NewFromConfig(awsCfg, func(o *dynamodb.Options) {
		if cfg.endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.endpoint) // over a service-specific AWS_ENDPOINT_URL_DYNAMODB too
		}
	})
	return s, nil
}

// AWSConfig returns the AWS configuration the store's client was built from: region,
// credentials, HTTP client (Close closes its idle connections) and, with DynamoEndpoint, that
// endpoint as BaseEndpoint. A client of DynamoDB Streams built from it
// (dynamodbstreams.NewFromConfig) reaches the table's stream as the store reaches the table,
// so the reverse path needs no configuration of its own. With DynamoEndpoint the streams
// client calls that same endpoint, as moto and other local servers serve both APIs there; AWS
// itself serves streams at their own endpoint, which the SDK picks when no endpoint is set.
// With DynamoClient it is derived from the client's options.
func (s *DynamoStore) AWSConfig() aws.Config { return s.awsCfg }

// keyAV marshals a key; DynamoDB keys are S, N or B.
func keyAV(k Key) (types.AttributeValue, error) {
	av, err := marshalValue(k)
	if err != nil {
		return nil, err
	}
	switch av.(type) {
	case *types.AttributeValueMemberS, *types.AttributeValueMemberN, *types.AttributeValueMemberB:
		return av, nil
	}
	return nil, valueErr("key %s is not a string, number or binary (subtype 0)", KeyString(k))
}

// keyItem is the primary key of the item holding key.
func (s *DynamoStore) keyItem(key Key) (map[string]types.AttributeValue, error) {
	av, err := keyAV(key)
	if err != nil {
		return nil, err
	}
	return s.keyItemAV(av), nil
}

func (s *DynamoStore) keyItemAV(av types.AttributeValue) map[string]types.AttributeValue {
	m := map[string]types.AttributeValue{s.keyAttr: av}
	if s.sortAttr != "" {
		m[s.sortAttr] = s.sortValue
	}
	return m
}

func (s *DynamoStore) errf(op string, key Key, err error) error {
	if key == nil {
		return fmt.Errorf("dynamodb %s: %s: %w", s.table, op, err)
	}
	return fmt.Errorf("dynamodb %s: %s %s: %w", s.table, op, KeyString(key), err)
}

// encode maps doc to the item to write, checks its key and size, and returns the key's value.
func (s *DynamoStore) encode(doc bson.D) (map[string]types.AttributeValue, types.AttributeValue, error) {
	var key Key
	item := make(map[string]types.AttributeValue, len(doc)+1)
	for _, e := range doc {
		if s.sortAttr != "" && e.Key == s.sortAttr {
			return nil, nil, fmt.Errorf("field %q is the table's sort key, which the store sets: %w", e.Key, ErrUnsupportedValue)
		}
		if e.Key == s.keyAttr {
			key = e.Value
		}
		if err := putField(item, e.Key, e.Value); err != nil {
			return nil, nil, err
		}
	}
	kav, ok := item[s.keyAttr]
	if !ok {
		return nil, nil, fmt.Errorf("no field %q: %w", s.keyAttr, ErrKeyMissing)
	}
	switch kav.(type) {
	case *types.AttributeValueMemberS, *types.AttributeValueMemberN, *types.AttributeValueMemberB:
	default:
		return nil, nil, valueErr("key %s is not a string, number or binary (subtype 0)", KeyString(key))
	}
	if s.sortAttr != "" {
		item[s.sortAttr] = s.sortValue
	}
	if size := ItemSize(item); size > DynamoMaxItemSize {
		return nil, nil, fmt.Errorf("key %s: item is %d bytes, over DynamoDB's limit of %d: %w",
			KeyString(key), size, DynamoMaxItemSize, ErrItemTooLarge)
	}
	return item, kav, nil
}

// decode maps an item read from the table to a document: the key field first, then the others
// sorted by name, without the sort-key attribute.
func (s *DynamoStore) decode(item map[string]types.AttributeValue) (bson.D, error) {
	if s.sortAttr != "" {
		// Do not change the caller's map: copy only when the sort key is there.
		if _, ok := item[s.sortAttr]; ok {
			item = cloneWithout(item, s.sortAttr)
		}
	}
	d, err := unmarshalMap(item, true)
	if err != nil {
		return nil, err
	}
	if i := slices.IndexFunc(d, func(e bson.E) bool { return e.Key == s.keyAttr }); i > 0 {
		k := d[i]
		copy(d[1:i+1], d[:i])
		d[0] = k
	}
	return d, nil
}

func cloneWithout(m map[string]types.AttributeValue, skip string) map[string]types.AttributeValue {
	c := make(map[string]types.AttributeValue, len(m))
	for k, v := range m {
		if k != skip {
			c[k] = v
		}
	}
	return c
}

// Get reads the item with key, with a strongly consistent read.
func (s *DynamoStore) Get(ctx context.Context, key Key) (bson.D, error) {
	k, err := s.keyItem(key)
	if err != nil {
		return nil, s.errf("get", key, err)
	}
	out, err := s.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName: aws.String(s.table), Key: k, ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, s.errf("get", key, err)
	}
	if out.Item == nil {
		return nil, s.errf("get", key, ErrNotFound)
	}
	d, err := s.decode(out.Item)
	if err != nil {
		return nil, s.errf("get", key, err)
	}
	return d, nil
}

// BatchGet reads keys with strongly consistent BatchGetItem calls of at most 100 keys, retrying
// unprocessed keys (DynamoRetries). Keys that DynamoDB takes as one (int32 5, int64 5 and 5.0)
// are read once and returned under each.
func (s *DynamoStore) BatchGet(ctx context.Context, keys []Key) (map[string]bson.D, error) {
	type want struct {
		av    types.AttributeValue
		names []string // KeyString of every requested alias
	}
	byCanon := make(map[string]*want, len(keys))
	order := make([]string, 0, len(keys))
	for _, k := range keys {
		av, err := keyAV(k)
		if err != nil {
			return nil, s.errf("batch get", k, err)
		}
		c := keyCanon(av)
		w, ok := byCanon[c]
		if !ok {
			w = &want{av: av}
			byCanon[c] = w
			order = append(order, c)
		}
		w.names = append(w.names, KeyString(k))
	}
	result := make(map[string]bson.D, len(keys))
	for chunk := range slices.Chunk(order, dynamoBatchGetMax) {
		req := make([]map[string]types.AttributeValue, len(chunk))
		for i, c := range chunk {
			req[i] = s.keyItemAV(byCanon[c].av)
		}
		items, err := s.batchGet(ctx, req)
		if err != nil {
			return nil, s.errf("batch get", nil, err)
		}
		for _, item := range items {
			kav, ok := item[s.keyAttr]
			if !ok {
				continue
			}
			w := byCanon[keyCanon(kav)]
			if w == nil {
				continue
			}
			d, err := s.decode(item)
			if err != nil {
				return nil, s.errf("batch get", nil, err)
			}
			for _, n := range w.names {
				result[n] = d
			}
		}
	}
	return result, nil
}

func (s *DynamoStore) batchGet(ctx context.Context, keys []map[string]types.AttributeValue) ([]map[string]types.AttributeValue, error) {
	var items []map[string]types.AttributeValue
	pending := keys
	for attempt := 0; ; attempt++ {
		out, err := s.api.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{
			RequestItems: map[string]types.KeysAndAttributes{
				s.table: {Keys: pending, ConsistentRead: aws.Bool(true)},
			},
		})
		if err != nil {
			return nil, err
		}
		items = append(items, out.Responses[s.table]...)
		pending = out.UnprocessedKeys[s.table].Keys
		if len(pending) == 0 {
			return items, nil
		}
		if attempt+1 >= s.retry.attempts {
			return nil, fmt.Errorf("%d of %d keys unprocessed after %d attempts: %w",
				len(pending), len(keys), s.retry.attempts, ErrRetriesExhausted)
		}
		if err := s.backoff(ctx, attempt); err != nil {
			return nil, err
		}
	}
}

// backoff sleeps before retry attempt+1: full jitter, a random time in [0, min(max, base·2^attempt)).
func (s *DynamoStore) backoff(ctx context.Context, attempt int) error {
	ceil := s.retry.max
	if attempt < 30 {
		ceil = min(s.retry.max, s.retry.base<<attempt)
	}
	if ceil <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(rand.N(ceil))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Upsert puts the item of doc (PutItem replaces the whole item).
func (s *DynamoStore) Upsert(ctx context.Context, doc bson.D) error {
	item, _, err := s.encode(doc)
	if err != nil {
		return s.errf("upsert", keyOrNil(doc, s.keyAttr), err)
	}
	if _, err := s.api.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(s.table), Item: item}); err != nil {
		return s.errf("upsert", keyOrNil(doc, s.keyAttr), err)
	}
	return nil
}

func keyOrNil(doc bson.D, field string) Key {
	for _, e := range doc {
		if e.Key == field {
			return e.Value
		}
	}
	return nil
}

// Delete deletes the item with key; a missing item is not an error.
func (s *DynamoStore) Delete(ctx context.Context, key Key) error {
	k, err := s.keyItem(key)
	if err != nil {
		return s.errf("delete", key, err)
	}
	if _, err := s.api.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(s.table), Key: k}); err != nil {
		return s.errf("delete", key, err)
	}
	return nil
}

// BulkWrite checks and maps every op first (nothing is sent if one fails), then sends them in
// BatchWriteItem calls of at most 25 (DynamoWriteConcurrency at a time), retrying unprocessed
// items under DynamoRetries. On error some batches may have been applied.
func (s *DynamoStore) BulkWrite(ctx context.Context, ops []WriteOp) error {
	reqs := make([]types.WriteRequest, len(ops))
	for i, op := range ops {
		if op.Doc == nil {
			k, err := s.keyItem(op.Key)
			if err != nil {
				return s.errf("bulk write: delete", op.Key, err)
			}
			reqs[i] = types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: k}}
			continue
		}
		item, kav, err := s.encode(op.Doc)
		if err != nil {
			return s.errf("bulk write: upsert", keyOrNil(op.Doc, s.keyAttr), err)
		}
		if op.Key != nil {
			want, err := keyAV(op.Key)
			if err != nil {
				return s.errf("bulk write: upsert", op.Key, err)
			}
			if keyCanon(want) != keyCanon(kav) {
				return s.errf("bulk write: upsert", op.Key, errors.New("the document's key differs from the op's"))
			}
		}
		reqs[i] = types.WriteRequest{PutRequest: &types.PutRequest{Item: item}}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, s.writers)
	)
	for chunk := range slices.Chunk(reqs, dynamoBatchPutMax) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.batchWrite(ctx, chunk); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return s.errf("bulk write", nil, firstErr)
	}
	return nil
}

func (s *DynamoStore) batchWrite(ctx context.Context, reqs []types.WriteRequest) error {
	pending := reqs
	for attempt := 0; ; attempt++ {
		out, err := s.api.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{
			RequestItems: map[string][]types.WriteRequest{s.table: pending},
		})
		if err != nil {
			return err
		}
		pending = out.UnprocessedItems[s.table]
		if len(pending) == 0 {
			return nil
		}
		if attempt+1 >= s.retry.attempts {
			return fmt.Errorf("%d of %d items unprocessed after %d attempts: %w",
				len(pending), len(reqs), s.retry.attempts, ErrRetriesExhausted)
		}
		if err := s.backoff(ctx, attempt); err != nil {
			return err
		}
	}
}

// Scan reads the segment p.Segment of p.Segments (the whole table when p.Segments is 0) with
// eventually consistent Scan calls of opts.Batch items, resuming after opts.After (which must
// be a key of that segment, as saved from an earlier scan of it). Items come in the segment's
// order, not key order.
func (s *DynamoStore) Scan(ctx context.Context, p Partition, opts ScanOptions, fn func([]bson.D) error) error {
	batch := opts.Batch
	if batch <= 0 {
		batch = 500
	}
	in := &dynamodb.ScanInput{TableName: aws.String(s.table), Limit: aws.Int32(int32(min(batch, 1<<30)))}
	if p.Segments > 0 {
		if p.Segment < 0 || p.Segment >= p.Segments || p.Segments > dynamoMaxSegments {
			return s.errf("scan", nil, fmt.Errorf("invalid segment %d of %d", p.Segment, p.Segments))
		}
		in.Segment, in.TotalSegments = aws.Int32(int32(p.Segment)), aws.Int32(int32(p.Segments))
	}
	if s.sortAttr != "" {
		in.FilterExpression = aws.String("#sk = :sk")
		in.ExpressionAttributeNames = map[string]string{"#sk": s.sortAttr}
		in.ExpressionAttributeValues = map[string]types.AttributeValue{":sk": s.sortValue}
	}
	if opts.After != nil {
		k, err := s.keyItem(opts.After)
		if err != nil {
			return s.errf("scan after", opts.After, err)
		}
		in.ExclusiveStartKey = k
	}
	for {
		out, err := s.api.Scan(ctx, in)
		if err != nil {
			return s.errf("scan", nil, err)
		}
		for chunk := range slices.Chunk(out.Items, batch) {
			docs := make([]bson.D, len(chunk))
			for i, item := range chunk {
				if docs[i], err = s.decode(item); err != nil {
					return s.errf("scan", nil, err)
				}
			}
			if err := fn(docs); err != nil {
				return err
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// EstimateCount returns DescribeTable's ItemCount, which DynamoDB refreshes about every six
// hours, and which counts every item of the table whatever its sort key.
func (s *DynamoStore) EstimateCount(ctx context.Context) (int64, error) {
	out, err := s.api.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)})
	if err != nil {
		return 0, s.errf("describe table", nil, err)
	}
	if out.Table == nil || out.Table.ItemCount == nil {
		return 0, nil
	}
	return *out.Table.ItemCount, nil
}

// Partitions returns n parallel-scan segments (at least 1, at most 1,000,000).
func (s *DynamoStore) Partitions(_ context.Context, n int) ([]Partition, error) {
	n = min(max(n, 1), dynamoMaxSegments)
	ps := make([]Partition, n)
	for i := range ps {
		ps[i] = Partition{Segment: i, Segments: n}
	}
	return ps, nil
}

// KeyOf returns the key field's value as DynamoDB gives it back (an int64 5 becomes int32 5).
func (s *DynamoStore) KeyOf(doc bson.D) (Key, error) {
	for _, e := range doc {
		if e.Key == s.keyAttr {
			av, err := keyAV(e.Value)
			if err != nil {
				return nil, s.errf("key of", e.Value, err)
			}
			return unmarshalValue(av)
		}
	}
	return nil, s.errf("key of", nil, fmt.Errorf("no field %q: %w", s.keyAttr, ErrKeyMissing))
}

// Table returns the name of the store's table.
func (s *DynamoStore) Table() string { return s.table }

// ItemKey returns the Store key of the item whose primary-key attributes are keys (a DynamoDB
// Streams record's Keys, say): the partition key's value as Get and KeyOf give it (N "5" is
// int32 5), so that a converge by it reads that item. ours is false, with no error, for an item
// of another sort-key value than the store's (DynamoSortKey): no document of this store.
func (s *DynamoStore) ItemKey(keys map[string]types.AttributeValue) (key Key, ours bool, err error) {
	av, ok := keys[s.keyAttr]
	if !ok {
		return nil, false, s.errf("item key", nil, fmt.Errorf("no attribute %q: %w", s.keyAttr, ErrKeyMissing))
	}
	switch av.(type) {
	case *types.AttributeValueMemberS, *types.AttributeValueMemberN, *types.AttributeValueMemberB:
	default:
		return nil, false, s.errf("item key", nil, valueErr("attribute %q is a %T, not a string, number or binary", s.keyAttr, av))
	}
	if s.sortAttr != "" {
		sv, ok := keys[s.sortAttr]
		if !ok {
			return nil, false, s.errf("item key", nil, fmt.Errorf("no sort key attribute %q: %w", s.sortAttr, ErrKeyMissing))
		}
		if keyCanon(sv) != keyCanon(s.sortValue) {
			return nil, false, nil
		}
	}
	if key, err = unmarshalValue(av); err != nil {
		return nil, false, s.errf("item key", nil, err)
	}
	return key, true, nil
}

// Normalize maps doc to an item and back: numbers, field order, binaries and dates come out as
// Get returns them. Its errors are those Upsert would give, too-large items included.
func (s *DynamoStore) Normalize(doc bson.D) (bson.D, error) {
	item, _, err := s.encode(doc)
	if err != nil {
		return nil, s.errf("normalize", keyOrNil(doc, s.keyAttr), err)
	}
	d, err := s.decode(item)
	if err != nil {
		return nil, s.errf("normalize", keyOrNil(doc, s.keyAttr), err)
	}
	return d, nil
}

// Close closes the idle connections of a client the store built; with DynamoClient it does
// nothing.
func (s *DynamoStore) Close(context.Context) error {
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	return nil
}

var _ Store = (*DynamoStore)(nil)
