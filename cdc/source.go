package cdc

import (
	"context"
	"errors"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
)

// Op is the kind of change a source reported for a key. Converge does not need it (it reads
// the key's current state from both stores); it is kept for logs, metrics and the tests.
type Op string

// The operations sources report.
const (
	OpInsert  Op = "insert"
	OpUpdate  Op = "update"
	OpReplace Op = "replace"
	OpDelete  Op = "delete"
)

// Change is one changed key, projected to what converge needs: never the document itself, so no
// change approaches a store's item limit whatever the document's size.
type Change struct {
	Key adapters.Key
	Op  Op
	// At is when the store applied the change: a MongoDB event's clusterTime, a DynamoDB
	// record's ApproximateCreationDateTime. The lag is now minus the newest applied At.
	At time.Time
}

// Batch is a run of changes in the source's order and the position just after the last of
// them. Once every change of this batch and of the batches before it has been converged,
// Position may be saved: a source started from it delivers what comes after. An empty batch
// with a position moves the checkpoint on without changes (a MongoDB post-batch resume token,
// a DynamoDB shard that closed); At then is the source's clock when it knows it is caught up,
// or zero.
type Batch struct {
	Changes  []Change
	Position Position
	// At is the newest change's At (or, for an empty batch, see above).
	At time.Time
	// CaughtUp says the source had nothing more to deliver when it sent this batch: the lag
	// is 0.
	CaughtUp bool
}

// Position is a source's opaque resume point (a change stream's resume token, a DynamoDB
// stream's sequence number per shard), as a BSON document the catalog can store. Only the
// source that made it reads it.
type Position = bson.Raw

// Source is one stream of changed keys: a MongoDB change stream (old store forward, new store
// reverse), a DynamoDB stream, the Kafka journal. One Source value is read by one tailer at a
// time.
type Source interface {
	// Name names the source in logs, metrics and errors ("mongo change stream app.users").
	Name() string
	// Start returns the position of "now": a tailer saves it before the backfill starts, so
	// that nothing written between the two is missed.
	Start(ctx context.Context) (Position, error)
	// Run reads changes after from (nil: from now) and sends them to out, in order, until ctx
	// ends (then it returns ctx.Err()) or the source fails. It never closes out. Errors
	// wrapping ErrHistoryLost and ErrInvalidated are permanent: running again from the same
	// position fails the same way.
	Run(ctx context.Context, from Position, out chan<- Batch) error
}

// Permanent errors of a Source.
var (
	// ErrHistoryLost means the source no longer holds the position to resume from
	// (MongoDB ChangeStreamHistoryLost, code 286; DynamoDB TrimmedDataAccessException): the
	// changes since the checkpoint are gone, and only a new backfill from a fresh position
	// makes the target whole again.
	ErrHistoryLost = errors.New("change history lost")
	// ErrInvalidated means the followed collection or table was dropped, renamed or
	// otherwise invalidated its stream: the path stops until an operator intervenes.
	ErrInvalidated = errors.New("change stream invalidated")
)
