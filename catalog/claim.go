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
