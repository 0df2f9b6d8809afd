package adapters

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Provisioner is a Store that can tell whether its collection or table exists and create it.
// MongoStore and DynamoStore implement it; the backfill uses it to create its target.
type Provisioner interface {
	// Exists reports whether the collection or table exists.
	Exists(ctx context.Context) (bool, error)
	// Provision creates the collection (with p.Indexes) or the table when it is absent, and
	// reports whether it did. A MongoDB collection that exists gets the indexes it lacks; two
	// processes provisioning at once both succeed.
	Provision(ctx context.Context, p Provisioning) (created bool, err error)
}

// Provisioning describes what Provision creates.
type Provisioning struct {
	// Indexes are a MongoDB collection's secondary indexes. Optional; a DynamoDB store refuses
	// any.
	Indexes []Index
	// KeyType is a new DynamoDB table's partition-key type: "S", "N" or "B". Optional; default
	// "S". MongoDB ignores it.
	KeyType string
}

// Index is a MongoDB secondary index.
type Index struct {
	// Name is the index's name. Optional; default: the server's (field_1_other_-1).
	Name string
	// Keys are the fields and their order (1 or -1). Required.
	Keys   bson.D
	Unique bool
	Sparse bool
}

// MongoDB's error code for a collection that exists already.
const mongoNamespaceExists = 48

// Exists looks the collection up with listCollections.
func (s *MongoStore) Exists(ctx context.Context) (bool, error) {
	names, err := s.coll.Database().ListCollectionNames(ctx, bson.D{{Key: "name", Value: s.coll.Name()}})
	if err != nil {
		return false, s.errf("list collections", nil, err)
	}
	return len(names) > 0, nil
}

// Provision creates the collection if it is absent, then those of p.Indexes whose name (given,
// or MongoDB's default) the collection lacks; an index of that name with other keys or options
// is left as it is.
func (s *MongoStore) Provision(ctx context.Context, p Provisioning) (bool, error) {
	exists, err := s.Exists(ctx)
	if err != nil {
		return false, err
	}
	created := false
	if !exists {
		err := s.coll.Database().CreateCollection(ctx, s.coll.Name())
		var se mongo.ServerError
		switch {
		case err == nil:
			created = true
		case errors.As(err, &se) && se.HasErrorCode(mongoNamespaceExists):
			// another process created it first
		default:
			return false, s.errf("create collection", nil, err)
		}
	}
	if len(p.Indexes) == 0 {
		return created, nil
	}
	// Create only the missing indexes, one per command: FerretDB v1.24 drops the connection on a
	// createIndexes command that names two or more indexes that exist already.
	specs, err := s.coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		return created, s.errf("list indexes", nil, err)
	}
	have := make(map[string]bool, len(specs))
	for _, sp := range specs {
		have[sp.Name] = true
	}
	for i, ix := range p.Indexes {
		if len(ix.Keys) == 0 {
			return created, s.errf("create indexes", nil, fmt.Errorf("index %d has no keys", i))
		}
		name := ix.Name
		if name == "" {
			name = defaultIndexName(ix.Keys)
		}
		if have[name] {
			continue
		}
		o := options.Index().SetName(name)
		if ix.Unique {
			o.SetUnique(true)
		}
		if ix.Sparse {
			o.SetSparse(true)
		}
		if _, err := s.coll.Indexes().CreateOne(ctx, mongo.IndexModel{Keys: ix.Keys, Options: o}); err != nil {
			return created, s.errf("create index "+name, nil, err)
		}
	}
	return created, nil
}

// defaultIndexName is the name MongoDB gives an index without one: field_order joined by _.
func defaultIndexName(keys bson.D) string {
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte('_')
		}
		fmt.Fprintf(&b, "%s_%v", k.Key, k.Value)
	}
	return b.String()
}

// dynamoTableWait bounds how long Provision waits for a new table to become active.
const dynamoTableWait = 2 * time.Minute

// Exists calls DescribeTable; ResourceNotFoundException means absent.
func (s *DynamoStore) Exists(ctx context.Context) (bool, error) {
	_, err := s.api.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)})
	var nf *types.ResourceNotFoundException
	if errors.As(err, &nf) {
		return false, nil
	}
	if err != nil {
		return false, s.errf("describe table", nil, err)
	}
	return true, nil
}

// Provision creates an on-demand table keyed by the store's partition-key attribute (of type
// p.KeyType) and, with DynamoSortKey, its sort key (of the constant's type), with a KEYS_ONLY
// stream (for the reverse path), and waits until it is active. A table that exists is left as
// it is, whatever its key schema and stream.
func (s *DynamoStore) Provision(ctx context.Context, p Provisioning) (bool, error) {
	if len(p.Indexes) > 0 {
		return false, s.errf("create table", nil, errors.New("secondary indexes are not supported on DynamoDB targets"))
	}
	exists, err := s.Exists(ctx)
	if err != nil || exists {
		return false, err
	}
	kt := types.ScalarAttributeType(p.KeyType)
	switch kt {
	case "":
		kt = types.ScalarAttributeTypeS
	case types.ScalarAttributeTypeS, types.ScalarAttributeTypeN, types.ScalarAttributeTypeB:
	default:
		return false, s.errf("create table", nil, fmt.Errorf("key type %q: want S, N or B", p.KeyType))
	}
	in := &dynamodb.CreateTableInput{
		TableName:            aws.String(s.table),
		BillingMode:          types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String(s.keyAttr), AttributeType: kt}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String(s.keyAttr), KeyType: types.KeyTypeHash}},
		// The reverse path (cdc.DynamoStream) follows the table's stream. Keys are all it reads:
		// converge reads the item itself, so no record carries an image of up to 400 KB.
		StreamSpecification: &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeKeysOnly},
	}
	if s.sortAttr != "" {
		st := types.ScalarAttributeTypeS
		switch s.sortValue.(type) {
		case *types.AttributeValueMemberN:
			st = types.ScalarAttributeTypeN
		case *types.AttributeValueMemberB:
			st = types.ScalarAttributeTypeB
		}
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String(s.sortAttr), AttributeType: st})
		in.KeySchema = append(in.KeySchema, types.KeySchemaElement{AttributeName: aws.String(s.sortAttr), KeyType: types.KeyTypeRange})
	}
	created := true
	if _, err := s.api.CreateTable(ctx, in); err != nil {
		var inUse *types.ResourceInUseException
		if !errors.As(err, &inUse) {
			return false, s.errf("create table", nil, err)
		}
		created = false // another process created it first; wait for it all the same
	}
	w := dynamodb.NewTableExistsWaiter(s.api, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 20*time.Millisecond, time.Second
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)}, dynamoTableWait); err != nil {
		return created, s.errf("waiting for the new table", nil, err)
	}
	return created, nil
}

var (
	_ Provisioner = (*MongoStore)(nil)
	_ Provisioner = (*DynamoStore)(nil)
)
