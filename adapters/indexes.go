package adapters

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// IndexInfo is an index a store has, as the verifier compares it with the spec's required
// indexes. For MongoDB, Keys are the fields with their order (1 or -1). For DynamoDB, the
// table's own key schema is listed first with Primary set, then every global and local
// secondary index; Keys are the partition key attribute, then the sort key attribute, each
// with order 1 (DynamoDB has no order).
type IndexInfo struct {
	Name    string
	Keys    bson.D
	Unique  bool
	Sparse  bool
	Primary bool
}

// IndexLister is a store that can list its indexes (MongoStore and DynamoStore).
type IndexLister interface {
	Indexes(ctx context.Context) ([]IndexInfo, error)
}

// Indexes lists the collection's indexes (listIndexes).
func (s *MongoStore) Indexes(ctx context.Context) ([]IndexInfo, error) {
	specs, err := s.coll.Indexes().ListSpecifications(ctx)
	if err != nil {
		return nil, s.errf("list indexes", nil, err)
	}
	out := make([]IndexInfo, 0, len(specs))
	for _, sp := range specs {
		var keys bson.D
		if err := bson.Unmarshal(sp.KeysDocument, &keys); err != nil {
			return nil, s.errf("list indexes", nil, fmt.Errorf("index %s: %w", sp.Name, err))
		}
		ix := IndexInfo{Name: sp.Name, Keys: keys, Primary: sp.Name == "_id_"}
		if sp.Unique != nil {
			ix.Unique = *sp.Unique
		}
		if sp.Sparse != nil {
			ix.Sparse = *sp.Sparse
		}
		out = append(out, ix)
	}
	return out, nil
}

// Indexes describes the table: its key schema, then its secondary indexes.
func (s *DynamoStore) Indexes(ctx context.Context) ([]IndexInfo, error) {
	out, err := s.api.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(s.table)})
	if err != nil {
		return nil, s.errf("describe table", nil, err)
	}
	t := out.Table
	res := []IndexInfo{{Name: aws.ToString(t.TableName), Keys: dynamoKeys(t.KeySchema), Unique: true, Primary: true}}
	for _, g := range t.GlobalSecondaryIndexes {
		res = append(res, IndexInfo{Name: aws.ToString(g.IndexName), Keys: dynamoKeys(g.KeySchema)})
	}
	for _, l := range t.LocalSecondaryIndexes {
		res = append(res, IndexInfo{Name: aws.ToString(l.IndexName), Keys: dynamoKeys(l.KeySchema)})
	}
	return res, nil
}

// dynamoKeys orders a key schema: the partition (HASH) key, then the sort (RANGE) key.
func dynamoKeys(ks []types.KeySchemaElement) bson.D {
	var out bson.D
	for _, want := range []types.KeyType{types.KeyTypeHash, types.KeyTypeRange} {
		for _, k := range ks {
			if k.KeyType == want {
				out = append(out, bson.E{Key: aws.ToString(k.AttributeName), Value: int32(1)})
			}
		}
	}
	return out
}
