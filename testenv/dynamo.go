package testenv

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// DynamoDB returns a client for the moto server, with static credentials and MotoRegion.
func (m *Moto) DynamoDB() *dynamodb.Client {
	return dynamodb.New(dynamodb.Options{
		BaseEndpoint: aws.String(m.endpoint),
		Region:       MotoRegion,
		Credentials:  credentials.NewStaticCredentialsProvider(MotoAccessKey, MotoSecretKey, ""),
	})
}

// Table describes a table for CreateTable.
type Table struct {
	// Name is the table's name. Required; UniqueName makes one per test.
	Name string
	// Key is the partition-key attribute. Required.
	Key string
	// KeyType is the partition key's type. Optional; default S.
	KeyType types.ScalarAttributeType
	// Sort is the sort-key attribute. Optional; default none.
	Sort string
	// SortType is the sort key's type. Optional; default S.
	SortType types.ScalarAttributeType
}

// CreateTable creates an on-demand table and waits until it is active.
func CreateTable(ctx context.Context, c *dynamodb.Client, t Table) error {
	if t.KeyType == "" {
		t.KeyType = types.ScalarAttributeTypeS
	}
	if t.SortType == "" {
		t.SortType = types.ScalarAttributeTypeS
	}
	in := &dynamodb.CreateTableInput{
		TableName:   aws.String(t.Name),
		BillingMode: types.BillingModePayPerRequest,
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String(t.Key), AttributeType: t.KeyType},
		},
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(t.Key), KeyType: types.KeyTypeHash},
		},
	}
	if t.Sort != "" {
		in.AttributeDefinitions = append(in.AttributeDefinitions,
			types.AttributeDefinition{AttributeName: aws.String(t.Sort), AttributeType: t.SortType})
		in.KeySchema = append(in.KeySchema, types.KeySchemaElement{AttributeName: aws.String(t.Sort), KeyType: types.KeyTypeRange})
	}
	if _, err := c.CreateTable(ctx, in); err != nil {
		return fmt.Errorf("creating table %s: %w", t.Name, err)
	}
	w := dynamodb.NewTableExistsWaiter(c, func(o *dynamodb.TableExistsWaiterOptions) {
		o.MinDelay, o.MaxDelay = 20*time.Millisecond, 500*time.Millisecond
	})
	if err := w.Wait(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(t.Name)}, 30*time.Second); err != nil {
		return fmt.Errorf("waiting for table %s: %w", t.Name, err)
	}
	return nil
}

var uniqueSeq atomic.Int64

// UniqueName returns prefix followed by a number unique in this process and the time, a valid
// DynamoDB table name (and MongoDB collection name) when prefix is.
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, time.Now().UnixNano()%1e9, uniqueSeq.Add(1))
}
