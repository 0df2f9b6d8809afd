package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.mongodb.org/mongo-driver/v2/x/bsonx/bsoncore"

	"github.com/tandemdb/tandem/adapters"
)

// Server error codes a change stream meets (https://www.mongodb.com/docs/manual/reference/error-codes/).
const (
	codeInvalidResumeToken      = 260
	codeChangeStreamFatalError  = 280
	codeChangeStreamHistoryLost = 286
)

// ChangeStreamConfig configures a ChangeStream.
type ChangeStreamConfig struct {
	// Collection is the followed collection. Required. Its deployment must be a replica set or
	// a sharded cluster (a standalone MongoDB has no change streams).
	Collection *mongo.Collection
	// MaxAwait is how long the server may hold a getMore that finds nothing. Optional; default 1s.
	MaxAwait time.Duration
	// Poll is the pause after a getMore that returned nothing, so that a server that answers
	// at once (one that ignores maxAwaitTimeMS) is not polled in a busy loop. Optional;
	// default 100ms.
	Poll time.Duration
	// BatchSize is the most events one getMore returns, and MaxChanges the most changes one
	// Batch carries. Optional; defaults 500 and 500.
	BatchSize  int32
	MaxChanges int
	// OnSkip is called with the kind of each event passed over (one of an unknown kind without
	// a document key); the event is logged too. Optional.
	OnSkip func(kind string)
	// Logger is the logger. Optional; default slog.Default().
	Logger *slog.Logger
}

// ChangeStream is the Source of one MongoDB collection's change stream (driver v2
// Collection.Watch). Events are projected to _id (the resume token), operationType,
// documentKey, clusterTime, wallTime and ns, so no event approaches the 16 MiB limit whatever
// the document's size. Its Position is {token: <resume token>} or, before the first event on a
// server that sends no post-batch resume token, {at: <cluster time>}.
//
// Events: insert, update, replace and delete give their documentKey's _id; drop, rename,
// dropDatabase and invalidate end Run with ErrInvalidated (the changes before them are sent
// first); ChangeStreamHistoryLost (286), InvalidResumeToken (260) and ChangeStreamFatalError
// (280) end it with ErrHistoryLost, since in each case only a new copy from a fresh position
// makes the target whole. An event of another kind is converged when it has a documentKey, and
// skipped (logged, OnSkip) when it has none; an event whose key is unusable ends Run with
// ErrBadEvent.
type ChangeStream struct {
	cfg  ChangeStreamConfig
	name string
	log  *slog.Logger
}

// NewChangeStream checks cfg and returns the source.
func NewChangeStream(cfg ChangeStreamConfig) (*ChangeStream, error) {
	switch {
	case cfg.Collection == nil:
		return nil, errors.New("cdc: ChangeStreamConfig.Collection is required")
	case cfg.MaxAwait < 0 || cfg.Poll < 0 || cfg.BatchSize < 0 || cfg.MaxChanges < 0:
		return nil, errors.New("cdc: ChangeStreamConfig.MaxAwait, Poll, BatchSize and MaxChanges must not be negative")
	}
	if cfg.MaxAwait == 0 {
		cfg.MaxAwait = time.Second
	}
	if cfg.Poll == 0 {
		cfg.Poll = 100 * time.Millisecond
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = 500
	}
	if cfg.MaxChanges == 0 {
		cfg.MaxChanges = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	name := fmt.Sprintf("mongo change stream %s.%s", cfg.Collection.Database().Name(), cfg.Collection.Name())
	return &ChangeStream{cfg: cfg, name: name, log: cfg.Logger.With("source", name)}, nil
}

// Name implements Source.
func (s *ChangeStream) Name() string { return s.name }

// projection keeps what converge needs of an event, and what says the stream ended.
var projection = mongo.Pipeline{{{Key: "$project", Value: bson.D{
	{Key: "operationType", Value: 1}, {Key: "documentKey", Value: 1}, {Key: "clusterTime", Value: 1},
	{Key: "wallTime", Value: 1}, {Key: "ns", Value: 1}, {Key: "to", Value: 1},
}}}}

// Start implements Source: the resume token the server hands a new stream (its post-batch
// resume token), or, from a server without one, its clock a second ago as a cluster time (a
// change in that second may then be delivered although it came before: converging it again is
// harmless).
func (s *ChangeStream) Start(ctx context.Context) (Position, error) {
	cs, err := s.cfg.Collection.Watch(ctx, projection, options.ChangeStream().SetBatchSize(1))
	if err != nil {
		return nil, s.streamError("opening", err)
	}
	tok := cs.ResumeToken()
	_ = cs.Close(context.WithoutCancel(ctx))
	if tok != nil {
		return tokenPosition(tok)
	}
	var hello struct {
		LocalTime time.Time `bson:"localTime"`
	}
	if err := s.cfg.Collection.Database().RunCommand(ctx, bson.D{{Key: "isMaster", Value: 1}}).Decode(&hello); err != nil {
		return nil, fmt.Errorf("%s: reading the server's clock: %w", s.name, err)
	}
	if hello.LocalTime.IsZero() {
		return nil, fmt.Errorf("%s: the server gave neither a resume token nor its clock (localTime)", s.name)
	}
	at := hello.LocalTime.Add(-time.Second)
	return marshalPosition(bson.D{{Key: "at", Value: bson.Timestamp{T: uint32(at.Unix()), I: 0}}})
}

func tokenPosition(tok bson.Raw) (Position, error) {
	return marshalPosition(bson.D{{Key: "token", Value: tok}})
}

func marshalPosition(d bson.D) (Position, error) {
	b, err := bson.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encoding a change-stream position: %w", err)
	}
	return Position(b), nil
}

// watchOptions are the options that resume from pos (nil: from now).
func (s *ChangeStream) watchOptions(pos Position) (*options.ChangeStreamOptionsBuilder, error) {
	opts := options.ChangeStream().SetBatchSize(s.cfg.BatchSize).SetMaxAwaitTime(s.cfg.MaxAwait)
	if pos == nil {
		return opts, nil
	}
	if err := pos.Validate(); err != nil {
		return nil, fmt.Errorf("%s: the checkpoint is not a BSON document: %w", s.name, err)
	}
	if v, err := pos.LookupErr("token"); err == nil {
		doc, ok := v.DocumentOK()
		if !ok {
			return nil, fmt.Errorf("%s: the checkpoint's token is a %s, not a document", s.name, v.Type)
		}
		return opts.SetResumeAfter(bson.Raw(doc)), nil
	}
	if v, err := pos.LookupErr("at"); err == nil {
		t, i, ok := v.TimestampOK()
		if !ok {
			return nil, fmt.Errorf("%s: the checkpoint's at is a %s, not a timestamp", s.name, v.Type)
		}
		return opts.SetStartAtOperationTime(&bson.Timestamp{T: t, I: i}), nil
	}
	return nil, fmt.Errorf("%s: the checkpoint %s has neither token nor at", s.name, pos)
}

// event is a projected change event.
type event struct {
	ID          bson.Raw       `bson:"_id"`
	Op          string         `bson:"operationType"`
	DocumentKey bson.Raw       `bson:"documentKey"`
	ClusterTime bson.Timestamp `bson:"clusterTime"`
	WallTime    time.Time      `bson:"wallTime"`
}

// Run implements Source.
func (s *ChangeStream) Run(ctx context.Context, from Position, out chan<- Batch) error {
	opts, err := s.watchOptions(from)
	if err != nil {
		return err
	}
	cs, err := s.cfg.Collection.Watch(ctx, projection, opts)
	if err != nil {
		return s.streamError("opening", err)
	}
	defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()
	r := &reader{s: s, cs: cs, out: out}
	return r.run(ctx)
}

// reader is one Run's state: the changes not yet sent and the token after the last of them.
type reader struct {
	s        *ChangeStream
	cs       *mongo.ChangeStream
	out      chan<- Batch
	changes  []Change
	token    bson.Raw // resume token of the last change in changes
	sentTok  bson.Raw // the token of the last batch sent
	lastWait bool     // the last batch sent said caught up
}

func (r *reader) run(ctx context.Context) error {
	for {
		if r.cs.TryNext(ctx) {
			stop, err := r.take(ctx)
			if err != nil || stop {
				return err
			}
			if len(r.changes) >= r.s.cfg.MaxChanges {
				if err := r.send(ctx, false); err != nil {
					return err
				}
			}
			continue
		}
		if err := r.cs.Err(); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// What was read before the failure is sent first, so that it is not read again.
			if serr := r.send(ctx, false); serr != nil {
				return serr
			}
			return r.s.streamError("reading", err)
		}
		// Nothing more now: what is read is all there is.
		if tok := r.cs.ResumeToken(); tok != nil && len(r.changes) == 0 {
			r.token = tok // the post-batch resume token moves the checkpoint without changes
		}
		if err := r.send(ctx, true); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.s.cfg.Poll):
		}
	}
}

// take reads the current event into the pending changes; stop is true (with the error) when the
// event ends the stream.
func (r *reader) take(ctx context.Context) (stop bool, err error) {
	var ev event
	if err := r.cs.Decode(&ev); err != nil {
		return true, fmt.Errorf("%s: decoding event %s: %v: %w", r.s.name, r.cs.Current, err, ErrBadEvent)
	}
	switch ev.Op {
	case "insert", "update", "replace", "delete":
	case "drop", "rename", "dropDatabase", "invalidate":
		if err := r.send(ctx, false); err != nil {
			return true, err
		}
		return true, fmt.Errorf("%s: %s event (resume token %s): %w", r.s.name, ev.Op, ev.ID, ErrInvalidated)
	default:
		if ev.DocumentKey == nil {
			r.s.log.Warn("change event of an unknown kind without a document key skipped", "kind", ev.Op, "token", ev.ID.String())
			if r.s.cfg.OnSkip != nil {
				r.s.cfg.OnSkip(ev.Op)
			}
			r.token = r.cs.ResumeToken()
			return false, nil
		}
		r.s.log.Info("change event of an unknown kind: its key is converged", "kind", ev.Op, "token", ev.ID.String())
	}
	key, err := eventKey(ev.DocumentKey)
	if err != nil {
		if serr := r.send(ctx, false); serr != nil {
			return true, serr
		}
		return true, fmt.Errorf("%s: %s event (resume token %s): %v: %w", r.s.name, ev.Op, ev.ID, err, ErrBadEvent)
	}
	at := ev.WallTime
	if at.IsZero() {
		at = time.Unix(int64(ev.ClusterTime.T), 0)
	}
	r.changes = append(r.changes, Change{Key: key, Op: Op(ev.Op), At: at})
	r.token = r.cs.ResumeToken()
	return false, nil
}

// send hands the pending changes to the tailer with the position after them. An empty batch
// is sent only when it moves the position or first says the stream is caught up.
func (r *reader) send(ctx context.Context, caughtUp bool) error {
	moved := r.token != nil && !bytesEqual(r.token, r.sentTok)
	if len(r.changes) == 0 && !moved && (!caughtUp || r.lastWait) {
		return nil
	}
	b := Batch{Changes: r.changes, CaughtUp: caughtUp}
	if moved {
		pos, err := tokenPosition(r.token)
		if err != nil {
			return err
		}
		b.Position = pos
	}
	if n := len(r.changes); n > 0 {
		b.At = r.changes[n-1].At
	} else if caughtUp {
		b.At = time.Now()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case r.out <- b:
	}
	r.changes, r.sentTok, r.lastWait = nil, r.token, caughtUp
	return nil
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// eventKey returns documentKey's _id as the Go value the v2 driver decodes it to (what
// adapters.Key holds). A missing _id, or one of a type no document is keyed by (null,
// undefined, regex, array), is an error.
func eventKey(documentKey bson.Raw) (adapters.Key, error) {
	if documentKey == nil {
		return nil, errors.New("no documentKey")
	}
	v, err := documentKey.LookupErr("_id")
	if err != nil {
		return nil, fmt.Errorf("documentKey %s has no _id", documentKey)
	}
	switch bsoncore.Type(v.Type) {
	case bsoncore.TypeNull, bsoncore.TypeUndefined, bsoncore.TypeRegex, bsoncore.TypeArray:
		return nil, fmt.Errorf("documentKey _id of type %s is not a key", bsoncore.Type(v.Type))
	}
	var k any
	if err := v.Unmarshal(&k); err != nil {
		return nil, fmt.Errorf("documentKey _id of type %s: %w", bsoncore.Type(v.Type), err)
	}
	return k, nil
}

// streamError maps the server's change-stream errors to the Source's permanent ones.
func (s *ChangeStream) streamError(doing string, err error) error {
	var se mongo.ServerError
	if errors.As(err, &se) {
		switch {
		case se.HasErrorCode(codeChangeStreamHistoryLost):
			return fmt.Errorf("%s: %s: the server no longer holds the checkpoint's position (ChangeStreamHistoryLost): %v: %w", s.name, doing, err, ErrHistoryLost)
		case se.HasErrorCode(codeInvalidResumeToken), se.HasErrorCode(codeChangeStreamFatalError):
			return fmt.Errorf("%s: %s: the server refuses the checkpoint's resume token: %v: %w", s.name, doing, err, ErrHistoryLost)
		}
	}
	return fmt.Errorf("%s: %s: %w", s.name, doing, err)
}
