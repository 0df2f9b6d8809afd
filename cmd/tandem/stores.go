package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/transform"
)

// openSource opens the store a spec reads from, keyed by the spec's source key field; it
// fails within timeout, in one line, when the store does not answer.
func openSource(ctx context.Context, s *transform.Spec, timeout time.Duration) (adapters.Store, error) {
	return openStore(ctx, fmt.Sprintf("spec %s: source %s at", s.File, s.Source), s.Source, s.Key.Source, "", nil, timeout)
}

// openTarget opens the store a spec writes to, keyed by its target key field (a MongoDB
// target) or partition key (a DynamoDB target, with the spec's constant sort key if any).
func openTarget(ctx context.Context, s *transform.Spec, timeout time.Duration) (adapters.Store, error) {
	what := fmt.Sprintf("spec %s: target %s at", s.File, s.Target)
	if s.Target.Kind == transform.StoreDynamoDB {
		return openStore(ctx, what, s.Target, s.Key.Partition, s.Key.SortAttribute, s.Key.SortValue, timeout)
	}
	return openStore(ctx, what, s.Target, s.Key.Target, "", nil, timeout)
}

func openStore(ctx context.Context, what string, ep transform.Endpoint, keyField, sortAttr string, sortValue any, timeout time.Duration) (adapters.Store, error) {
	switch ep.Kind {
	case transform.StoreMongoDB:
		client, err := connectMongo(ctx, what, ep.URI, timeout)
		if err != nil {
			return nil, err
		}
		coll := client.Database(ep.Database).Collection(ep.Collection)
		return adapters.NewMongoStore(coll, adapters.MongoKeyField(keyField), adapters.MongoOwnsClient()), nil
	case transform.StoreDynamoDB:
		opts := []adapters.DynamoOption{adapters.DynamoRegion(ep.Region)}
		endpoint := "AWS " + ep.Region
		if ep.EndpointURL != "" {
			opts = append(opts, adapters.DynamoEndpoint(ep.EndpointURL))
			endpoint = redactURI(ep.EndpointURL)
		}
		if sortAttr != "" {
			opts = append(opts, adapters.DynamoSortKey(sortAttr, sortValue))
		}
		openCtx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		st, err := adapters.NewDynamoStore(openCtx, ep.Table, keyField, opts...)
		if err == nil {
			// DescribeTable: the endpoint answers (the table may be absent: a backfill creates it).
			if _, err = st.Exists(openCtx); err != nil {
				_ = st.Close(context.Background())
			}
		}
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				return nil, fmt.Errorf("%s %s: not reachable within %s", what, endpoint, timeout)
			}
			return nil, fmt.Errorf("%s %s: %s", what, endpoint, oneLine(err.Error()))
		}
		return st, nil
	default:
		return nil, fmt.Errorf("%s: unknown store kind %q", what, ep.Kind)
	}
}
