package main

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/transform"
)

// openSource opens the store a spec reads from, keyed by the spec's source key field.
func openSource(ctx context.Context, s *transform.Spec) (adapters.Store, error) {
	return openStore(ctx, s.Source, s.Key.Source, "", nil)
}

// openTarget opens the store a spec writes to, keyed by its target key field (a MongoDB
// target) or partition key (a DynamoDB target, with the spec's constant sort key if any).
func openTarget(ctx context.Context, s *transform.Spec) (adapters.Store, error) {
	if s.Target.Kind == transform.StoreDynamoDB {
		return openStore(ctx, s.Target, s.Key.Partition, s.Key.SortAttribute, s.Key.SortValue)
	}
	return openStore(ctx, s.Target, s.Key.Target, "", nil)
}

func openStore(ctx context.Context, ep transform.Endpoint, keyField, sortAttr string, sortValue any) (adapters.Store, error) {
	switch ep.Kind {
	case transform.StoreMongoDB:
		client, err := mongo.Connect(options.Client().ApplyURI(ep.URI))
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", ep, err)
		}
		coll := client.Database(ep.Database).Collection(ep.Collection)
		return adapters.NewMongoStore(coll, adapters.MongoKeyField(keyField), adapters.MongoOwnsClient()), nil
	case transform.StoreDynamoDB:
		opts := []adapters.DynamoOption{adapters.DynamoRegion(ep.Region)}
		if ep.EndpointURL != "" {
			opts = append(opts, adapters.DynamoEndpoint(ep.EndpointURL))
		}
		if sortAttr != "" {
			opts = append(opts, adapters.DynamoSortKey(sortAttr, sortValue))
		}
		st, err := adapters.NewDynamoStore(ctx, ep.Table, keyField, opts...)
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", ep, err)
		}
		return st, nil
	default:
		return nil, fmt.Errorf("unknown store kind %q", ep.Kind)
	}
}
