package catalog

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Claims by insert: a record with a deterministic _id that only one process can insert. The
// backfill's partition leases and the verifier's task leases (one record per task and lease
// generation) are claimed this way, so nothing relies on FerretDB's non-atomic conditional
// updates. what names the record in errors.

// claimByInsert inserts doc; an error wrapping ErrConflict means another process inserted a
// record with its _id first.
func (c *Catalog) claimByInsert(ctx context.Context, coll string, doc any, what string) error {
	if _, err := c.db.Collection(coll).InsertOne(ctx, doc); err != nil {
		if mongo.IsDuplicateKeyError(err) {
			return fmt.Errorf("claiming %s: %w", what, ErrConflict)
		}
		return fmt.Errorf("claiming %s: %w", what, err)
	}
	return nil
}

// claimed reports whether a record with _id id exists in coll.
func (c *Catalog) claimed(ctx context.Context, coll, id, what string) (bool, error) {
	err := c.db.Collection(coll).FindOne(ctx, bson.D{{Key: "_id", Value: id}},
		options.FindOne().SetProjection(bson.D{{Key: "_id", Value: 1}})).Err()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", what, err)
	}
	return true, nil
}

// saveOwned applies set to the record _id id in coll if owner still holds it: a record that
// another process took over, or that is gone, gives an error wrapping ErrNotFound, so the
// caller stops working under a lease it no longer has.
func (c *Catalog) saveOwned(ctx context.Context, coll, id, owner string, set bson.D, what string) error {
	res, err := c.db.Collection(coll).UpdateOne(ctx,
		bson.D{{Key: "_id", Value: id}, {Key: "owner", Value: owner}}, bson.D{{Key: "$set", Value: set}})
	if err != nil {
		return fmt.Errorf("saving %s: %w", what, err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("%s of %s: %w", what, owner, ErrNotFound)
	}
	return nil
}

// newestClaims reads the claim records of coll that match filter and keeps, for each key, the
// one of the highest generation (a partition's or a task's newest lease). of returns a
// record's key and generation.
func newestClaims[R any, K comparable](ctx context.Context, c *Catalog, coll string, filter bson.D, what string, of func(R) (K, int64)) (map[K]R, error) {
	cur, err := c.db.Collection(coll).Find(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	var all []R
	if err := cur.All(ctx, &all); err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	out := make(map[K]R, len(all))
	newest := make(map[K]int64, len(all))
	for _, r := range all {
		k, g := of(r)
		if have, ok := newest[k]; !ok || g > have {
			out[k], newest[k] = r, g
		}
	}
	return out, nil
}
