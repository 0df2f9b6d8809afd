package backfill

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
)

// keyClasses are the $type aliases of the BSON type classes a key can have, in MongoDB's
// comparison order (https://www.mongodb.com/docs/manual/reference/bson-type-comparison-order/).
// A range query matches keys of its bound's class only, so the plan makes ranges per class.
// "number" covers int32, int64, double and decimal128, which compare as one class. Null,
// minKey and maxKey keys are left out: the stores cannot key a document by them (KeyOf calls a
// null key missing), and FerretDB rejects the minKey and maxKey aliases.
var keyClasses = []string{"number", "string", "object", "binData", "objectId", "bool", "date", "timestamp", "regex"}

// ClassCount is how many source keys a BSON type class has.
type ClassCount struct {
	Class string `json:"class"`
	Count int64  `json:"count"`
}

// collectionOf returns a MongoDB store's collection, or nil for another store.
func collectionOf(s adapters.Store) *mongo.Collection {
	if c, ok := s.(interface{ Collection() *mongo.Collection }); ok {
		return c.Collection()
	}
	return nil
}

// planPartitions splits the source into about n partitions. A MongoDB source gets key ranges
// per type class, each class's share of n in proportion to its count (at least one); every
// range has a lower bound of its class, so it matches that class only, and every key of the
// class at plan time lies in one of them. Other stores get their own Partitions (DynamoDB:
// parallel scan segments).
func planPartitions(ctx context.Context, old adapters.Store, keyField string, n int, sampled bool) ([]catalog.BackfillPartition, []ClassCount, error) {
	coll := collectionOf(old)
	if coll == nil {
		ps, err := old.Partitions(ctx, n)
		if err != nil {
			return nil, nil, fmt.Errorf("planning partitions: %w", err)
		}
		est, err := old.EstimateCount(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("planning partitions: %w", err)
		}
		out := make([]catalog.BackfillPartition, len(ps))
		for i, p := range ps {
			out[i] = catalog.BackfillPartition{Index: i, Min: p.Min, Max: p.Max, Segment: p.Segment, Segments: p.Segments, Estimate: est / int64(max(len(ps), 1))}
		}
		return out, nil, nil
	}
	var counts []ClassCount
	var total int64
	for _, class := range keyClasses {
		c, err := coll.CountDocuments(ctx, typeFilter(keyField, class))
		if err != nil {
			return nil, nil, fmt.Errorf("planning partitions: counting %s keys of %s: %w", class, coll.Name(), err)
		}
		if c > 0 {
			counts = append(counts, ClassCount{Class: class, Count: c})
			total += c
		}
	}
	var out []catalog.BackfillPartition
	for _, cc := range counts {
		share := max(1, int(int64(n)*cc.Count/max(total, 1)))
		share = int(min(int64(share), cc.Count))
		first, err := keyAt(ctx, coll, keyField, cc.Class, 0)
		if err != nil {
			return nil, nil, err
		}
		if first == nil {
			continue // gone since it was counted
		}
		var splits []any
		if sampled && share > 1 {
			splits, err = sampledSplits(ctx, coll, keyField, cc.Class, share)
			if stageUnsupported(err) {
				splits, err = nil, nil
				sampled = false
			}
			if err != nil {
				return nil, nil, err
			}
		}
		if !sampled || splits == nil {
			for i := 1; i < share; i++ {
				k, err := keyAt(ctx, coll, keyField, cc.Class, int64(i)*cc.Count/int64(share))
				if err != nil {
					return nil, nil, err
				}
				if k != nil {
					splits = append(splits, k)
				}
			}
		}
		lo := first
		est := cc.Count / int64(len(splits)+1)
		for _, k := range dedupe(splits, first) {
			out = append(out, catalog.BackfillPartition{Index: len(out), Class: cc.Class, Min: lo, Max: k, Estimate: est})
			lo = k
		}
		out = append(out, catalog.BackfillPartition{Index: len(out), Class: cc.Class, Min: lo, Estimate: est})
	}
	return out, counts, nil
}

func typeFilter(keyField, class string) bson.D {
	return bson.D{{Key: keyField, Value: bson.D{{Key: "$type", Value: class}}}}
}

// keyAt returns the key at position skip of a class in key order, nil past the end.
func keyAt(ctx context.Context, coll *mongo.Collection, keyField, class string, skip int64) (any, error) {
	o := options.FindOne().SetSort(bson.D{{Key: keyField, Value: 1}}).SetSkip(skip).SetProjection(bson.D{{Key: keyField, Value: 1}})
	raw, err := coll.FindOne(ctx, typeFilter(keyField, class), o).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("planning partitions: reading the %s key at %d of %s: %w", class, skip, coll.Name(), err)
	}
	return keyValue(raw, keyField)
}

func keyValue(raw bson.Raw, keyField string) (any, error) {
	var d bson.D
	if err := bson.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	for _, e := range d {
		if e.Key == keyField {
			return e.Value, nil
		}
	}
	return nil, nil
}

// sampledSplits picks n-1 split points of a class from 10·n keys drawn with $sample.
func sampledSplits(ctx context.Context, coll *mongo.Collection, keyField, class string, n int) ([]any, error) {
	cur, err := coll.Aggregate(ctx, mongo.Pipeline{
		{{Key: "$match", Value: typeFilter(keyField, class)}},
		{{Key: "$sample", Value: bson.D{{Key: "size", Value: 10 * n}}}},
		{{Key: "$project", Value: bson.D{{Key: keyField, Value: 1}}}},
		{{Key: "$sort", Value: bson.D{{Key: keyField, Value: 1}}}},
	})
	if err != nil {
		return nil, err
	}
	var docs []bson.Raw
	if err := cur.All(ctx, &docs); err != nil {
		return nil, err
	}
	var out []any
	for i := 1; i < n && len(docs) > 0; i++ {
		k, err := keyValue(docs[i*len(docs)/n], keyField)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// stageUnsupported reports a server without $sample: NotImplemented (FerretDB) or
// "Unrecognized pipeline stage name".
func stageUnsupported(err error) bool {
	var se mongo.ServerError
	return errors.As(err, &se) && (se.HasErrorCode(238) || se.HasErrorCode(40324))
}

// dedupe drops split points equal to the one before them or to the class's first key (a class
// with many equal-comparing keys: 1, 1.0 and int64 1 are one key to MongoDB).
func dedupe(splits []any, first any) []any {
	out := splits[:0]
	last := adapters.KeyString(first)
	for _, k := range splits {
		if ks := adapters.KeyString(k); ks != last {
			out = append(out, k)
			last = ks
		}
	}
	return out
}

// partitionOf is the store partition a catalog partition describes.
func partitionOf(p catalog.BackfillPartition) adapters.Partition {
	return adapters.Partition{Min: p.Min, Max: p.Max, Segment: p.Segment, Segments: p.Segments}
}
