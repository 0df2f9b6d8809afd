package shadow

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
)

// ReadNew reads keys (the old store's keys, which the new store holds under its own key
// field) from the new store and returns the documents in the old store's shape: the reverse
// transform, then the old store's Normalize. It is the read path once reads are served from
// new. Documents come in the order of keys; a key the new store lacks is left out, and a key
// given twice is returned once. An engine without a reverse transform returns ErrNoReverse.
func (e *Engine) ReadNew(ctx context.Context, keys []adapters.Key) ([]bson.D, error) {
	if e.cfg.Reverse == nil {
		return nil, fmt.Errorf("read new of %s: %w", e.cfg.Migration, ErrNoReverse)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	docs, err := e.cfg.New.BatchGet(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("read new of %s: reading %d keys: %w", e.cfg.Migration, len(keys), err)
	}
	out := make([]bson.D, 0, len(docs))
	seen := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		ks := adapters.KeyString(k)
		if _, dup := seen[ks]; dup {
			continue
		}
		seen[ks] = struct{}{}
		d, ok := docs[ks]
		if !ok {
			continue
		}
		back, err := e.cfg.Reverse(d)
		if err != nil {
			return nil, fmt.Errorf("read new of %s: key %s: reverse transform: %w", e.cfg.Migration, ks, err)
		}
		if back, err = e.cfg.Old.Normalize(back); err != nil {
			return nil, fmt.Errorf("read new of %s: key %s: %w", e.cfg.Migration, ks, err)
		}
		out = append(out, back)
	}
	return out, nil
}
