package cdc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/tandemdb/tandem/adapters"
)

// DynamoStreamsAPI is the part of *dynamodbstreams.Client a DynamoStream calls.
type DynamoStreamsAPI interface {
	ListStreams(context.Context, *dynamodbstreams.ListStreamsInput, ...func(*dynamodbstreams.Options)) (*dynamodbstreams.ListStreamsOutput, error)
	DescribeStream(context.Context, *dynamodbstreams.DescribeStreamInput, ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error)
	GetShardIterator(context.Context, *dynamodbstreams.GetShardIteratorInput, ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error)
	GetRecords(context.Context, *dynamodbstreams.GetRecordsInput, ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error)
}

var _ DynamoStreamsAPI = (*dynamodbstreams.Client)(nil)

// ErrDynamoRecord means a stream record cannot be turned into a change: it has no usable key
// (the table's key attribute is missing or of another type) or an event name other than
// INSERT, MODIFY and REMOVE. Run delivers the records before it and stops, so the checkpoint
// never passes a record that was not delivered; running again fails the same way until the
// configuration (the store's key attribute) is fixed. It wraps ErrBadEvent, so a tailer stops
// the path in state bad_event, as for a MongoDB event without a usable key.
var ErrDynamoRecord = fmt.Errorf("unusable DynamoDB stream record: %w", ErrBadEvent)

// ErrNoStream means the followed table has no enabled stream: Start and Run fail with it
// (wrapped, naming the table and the command that enables one) until the table's stream is
// enabled. DynamoStore.Provision creates tables with a stream.
var ErrNoStream = errors.New("the table has no stream enabled")

// DynamoDB Streams' limits (https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_streams_GetRecords.html).
const (
	dynamoMaxRecords   = 1000           // records per GetRecords
	dynamoRetention    = 24 * time.Hour // how long a stream keeps a record
	dynamoMaxExpiries  = 3              // fresh iterators that may expire in a row before Run gives up
	dynamoDescribePage = 100            // shards per DescribeStream
)

// DynamoStreamConfig wires a DynamoStream.
type DynamoStreamConfig struct {
	// Streams is the DynamoDB Streams client. Required.
	Streams DynamoStreamsAPI
	// Table is the store over the followed table: it names the table and turns a record's key
	// attributes into the Key that converge reads (DynamoStore.ItemKey); records of items of
	// another sort-key value than the store's are no documents of it and are passed over.
	// Required.
	Table *adapters.DynamoStore
	// StreamARN is the stream to follow. Optional; default: the table's newest enabled stream,
	// found with ListStreams.
	StreamARN string
	// Limit is the most records one GetRecords returns. Optional; default and maximum 1000.
	Limit int32
	// MinPoll is the least time between two GetRecords calls on one shard. Optional; default
	// 200ms (DynamoDB serves 5 a second per shard).
	MinPoll time.Duration
	// MaxIdle is the longest wait before asking again a shard that answered no records (the
	// wait doubles from MinPoll). Optional; default 2s.
	MaxIdle time.Duration
	// Refresh is how often the shard list is read again to find new shards; a shard that
	// closes makes Run read it at once. Optional; default 30s.
	Refresh time.Duration
	// IdleCheckpoint is how often a caught-up Run sends an empty batch with a fresh position,
	// so that a saved checkpoint stays younger than Retention while the table is idle.
	// Optional; default 1 minute.
	IdleCheckpoint time.Duration
	// Retention is how long the stream keeps a record: a position with records undelivered for
	// longer has lost history. Optional; default 24h (DynamoDB's, which cannot be changed).
	Retention time.Duration
	// Log is the logger. Optional; default slog.Default().
	Log *slog.Logger
	// Now is the clock. Optional; default time.Now.
	Now func() time.Time
}

// DynamoStream is the Source of a DynamoDB table's stream: the reverse path's, when the new
// store is a DynamoDB table. It reads the stream's shards (a parent's records before its
// children's), delivers each record's key, and checkpoints a sequence number per shard.
// Records carry keys only (any stream view type works; KEYS_ONLY suffices, since converge
// reads the item itself). See docs/cdc-dynamodb.md.
type DynamoStream struct {
	cfg DynamoStreamConfig
	log *slog.Logger
}

var _ Source = (*DynamoStream)(nil)

// NewDynamoStream checks cfg and returns the source.
func NewDynamoStream(cfg DynamoStreamConfig) (*DynamoStream, error) {
	switch {
	case cfg.Streams == nil:
		return nil, errors.New("cdc: DynamoStreamConfig.Streams is required")
	case cfg.Table == nil:
		return nil, errors.New("cdc: DynamoStreamConfig.Table is required")
	case cfg.Limit < 0 || cfg.Limit > dynamoMaxRecords:
		return nil, fmt.Errorf("cdc: DynamoStreamConfig.Limit %d: want 1 to %d", cfg.Limit, dynamoMaxRecords)
	}
	if cfg.Limit == 0 {
		cfg.Limit = dynamoMaxRecords
	}
	if cfg.MinPoll <= 0 {
		cfg.MinPoll = 200 * time.Millisecond
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = 2 * time.Second
	}
	cfg.MaxIdle = max(cfg.MaxIdle, cfg.MinPoll)
	if cfg.Refresh <= 0 {
		cfg.Refresh = 30 * time.Second
	}
	if cfg.IdleCheckpoint <= 0 {
		cfg.IdleCheckpoint = time.Minute
	}
	if cfg.Retention <= 0 {
		cfg.Retention = dynamoRetention
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &DynamoStream{cfg: cfg, log: log.With("source", "dynamodb stream "+cfg.Table.Table())}, nil
}

// Name names the source: "dynamodb stream TABLE".
func (d *DynamoStream) Name() string { return "dynamodb stream " + d.cfg.Table.Table() }

// Start returns the position of now. Closed shards are done (all their records are older); each
// open shard is read from its trim horizon to its newest record, whose sequence number becomes
// the shard's checkpoint: a record written after Start returns has a higher sequence number in
// that shard, or lies in a shard created later (a child, read from its beginning). An open shard
// with no records gets no sequence number and is read from its beginning. DynamoDB Streams has
// no call that names a shard's newest sequence number, and a LATEST iterator cannot be saved
// (it expires after 15 minutes), so the scan is the price of an exact start: one GetRecords per
// 1000 records an open shard holds (a shard holds at most about 4 hours of writes before it is
// closed and replaced by a child).
func (d *DynamoStream) Start(ctx context.Context) (Position, error) {
	arn, err := d.resolveStream(ctx)
	if err != nil {
		return nil, err
	}
	shards, status, err := d.describe(ctx, arn)
	if err != nil {
		return nil, err
	}
	if disabledStatus(status) {
		return nil, fmt.Errorf("%s: stream %s is %s: %w: %s", d.Name(), arn, status, ErrNoStream, enableStreamHint(d.cfg.Table.Table()))
	}
	now := d.cfg.Now()
	set := &shardSet{stream: arn, byID: map[string]*shardState{}}
	for _, sh := range shards {
		at := dynamoShardAt{ID: aws.ToString(sh.ShardId), Parent: aws.ToString(sh.ParentShardId), At: now}
		if closedShard(sh) {
			at.Done = true
		} else if at.Seq, at.Done, err = d.tip(ctx, arn, at.ID); err != nil {
			return nil, err
		}
		set.add(&shardState{dynamoShardAt: at})
	}
	return set.position()
}

// tip reads an open shard from its trim horizon until GetRecords answers no records, and
// returns the last sequence number seen ("" for none) and whether the shard closed meanwhile.
func (d *DynamoStream) tip(ctx context.Context, arn, shard string) (seq string, closed bool, err error) {
	iter, err := d.iterator(ctx, arn, shard, "")
	if err != nil {
		return "", false, err
	}
	for expiries := 0; ; {
		out, err := d.cfg.Streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(d.cfg.Limit)})
		var expired *types.ExpiredIteratorException
		if errors.As(err, &expired) && expiries < dynamoMaxExpiries {
			expiries++
			if iter, err = d.iterator(ctx, arn, shard, seq); err != nil {
				return "", false, err
			}
			continue
		}
		if err != nil {
			return "", false, fmt.Errorf("%s: start: reading shard %s to its end: %w", d.Name(), shard, err)
		}
		expiries = 0
		if n := len(out.Records); n > 0 {
			if seq, err = recordSeq(out.Records[n-1]); err != nil {
				return "", false, fmt.Errorf("%s: start: shard %s: %w", d.Name(), shard, err)
			}
		}
		if out.NextShardIterator == nil {
			return seq, true, nil
		}
		if len(out.Records) == 0 {
			return seq, false, nil
		}
		iter = out.NextShardIterator
		if err := sleepCtx(ctx, d.cfg.MinPoll); err != nil {
			return "", false, err
		}
	}
}

// resolveStream returns StreamARN, or the table's newest stream by ListStreams (stream labels
// are ISO 8601 times, so the greatest is the newest).
func (d *DynamoStream) resolveStream(ctx context.Context) (string, error) {
	if d.cfg.StreamARN != "" {
		return d.cfg.StreamARN, nil
	}
	table := d.cfg.Table.Table()
	in := &dynamodbstreams.ListStreamsInput{TableName: aws.String(table)}
	var arn, label string
	for {
		out, err := d.cfg.Streams.ListStreams(ctx, in)
		if err != nil {
			return "", fmt.Errorf("%s: listing the table's streams: %w", d.Name(), err)
		}
		for _, s := range out.Streams {
			if aws.ToString(s.TableName) == table && aws.ToString(s.StreamLabel) >= label {
				arn, label = aws.ToString(s.StreamArn), aws.ToString(s.StreamLabel)
			}
		}
		if out.LastEvaluatedStreamArn == nil || aws.ToString(out.LastEvaluatedStreamArn) == aws.ToString(in.ExclusiveStartStreamArn) {
			break
		}
		in.ExclusiveStartStreamArn = out.LastEvaluatedStreamArn
	}
	if arn == "" {
		return "", fmt.Errorf("%s: table %s: %w: %s", d.Name(), table, ErrNoStream, enableStreamHint(table))
	}
	return arn, nil
}

// enableStreamHint says how to enable a table's stream.
func enableStreamHint(table string) string {
	return fmt.Sprintf("enable one (any view type; KEYS_ONLY suffices), for example with "+
		"`aws dynamodb update-table --table-name %s --stream-specification StreamEnabled=true,StreamViewType=KEYS_ONLY`", table)
}

// describe lists every shard of the stream (DescribeStream, page by page) and its status.
func (d *DynamoStream) describe(ctx context.Context, arn string) ([]types.Shard, types.StreamStatus, error) {
	in := &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(arn), Limit: aws.Int32(dynamoDescribePage)}
	var (
		shards []types.Shard
		status types.StreamStatus
	)
	for {
		out, err := d.cfg.Streams.DescribeStream(ctx, in)
		var nf *types.ResourceNotFoundException
		if errors.As(err, &nf) {
			return nil, "", fmt.Errorf("%s: stream %s no longer exists (the table was deleted or its stream disabled long ago): %w: %w", d.Name(), arn, ErrInvalidated, err)
		}
		if err != nil {
			return nil, "", fmt.Errorf("%s: describing stream %s: %w", d.Name(), arn, err)
		}
		desc := out.StreamDescription
		if desc == nil {
			return nil, "", fmt.Errorf("%s: describing stream %s: no description in the answer", d.Name(), arn)
		}
		status = desc.StreamStatus
		for _, sh := range desc.Shards {
			if aws.ToString(sh.ShardId) == "" {
				return nil, "", fmt.Errorf("%s: describing stream %s: a shard without an id", d.Name(), arn)
			}
			shards = append(shards, sh)
		}
		next := aws.ToString(desc.LastEvaluatedShardId)
		if next == "" {
			return shards, status, nil
		}
		if next == aws.ToString(in.ExclusiveStartShardId) {
			return nil, "", fmt.Errorf("%s: describing stream %s: the page after shard %s starts at it again", d.Name(), arn, next)
		}
		in.ExclusiveStartShardId = aws.String(next)
	}
}

// iterator returns an iterator after seq, or at the shard's trim horizon when seq is "".
func (d *DynamoStream) iterator(ctx context.Context, arn, shard, seq string) (*string, error) {
	in := &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(arn), ShardId: aws.String(shard),
		ShardIteratorType: types.ShardIteratorTypeTrimHorizon}
	if seq != "" {
		in.ShardIteratorType, in.SequenceNumber = types.ShardIteratorTypeAfterSequenceNumber, aws.String(seq)
	}
	out, err := d.cfg.Streams.GetShardIterator(ctx, in)
	var trimmed *types.TrimmedDataAccessException
	if errors.As(err, &trimmed) {
		return nil, d.lost(fmt.Sprintf("shard %s: the records after sequence number %s were trimmed", shard, seq), err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: shard iterator of %s %s: %w", d.Name(), shard, in.ShardIteratorType, err)
	}
	if out.ShardIterator == nil {
		return nil, fmt.Errorf("%s: shard iterator of %s %s: none in the answer", d.Name(), shard, in.ShardIteratorType)
	}
	return out.ShardIterator, nil
}

// lost wraps ErrHistoryLost with what was lost and the recovery.
func (d *DynamoStream) lost(what string, cause error) error {
	err := fmt.Errorf("%s: %s: %w; recovery: take a fresh position (Start) and copy the table again (a new backfill from that position)", d.Name(), what, ErrHistoryLost)
	if cause != nil {
		err = fmt.Errorf("%w (%w)", err, cause)
	}
	return err
}

// Run reads the stream after from (nil: from Start) and sends a batch per GetRecords answer
// that holds records or closes a shard, and an empty CaughtUp batch when every readable shard
// has answered no records (again every IdleCheckpoint while that lasts). It reads one shard at
// a time, the one due soonest; a child shard only once its parent is done. At most one batch
// is held while out is full.
func (d *DynamoStream) Run(ctx context.Context, from Position, out chan<- Batch) error {
	if from == nil {
		p, err := d.Start(ctx)
		if err != nil {
			return err
		}
		from = p
	}
	pos, err := decodePosition(from)
	if err != nil {
		return fmt.Errorf("%s: %w", d.Name(), err)
	}
	r := &dynamoRun{d: d, set: newShardSet(pos), out: out}
	return r.run(ctx)
}

// dynamoRun is one Run's state.
type dynamoRun struct {
	d           *DynamoStream
	set         *shardSet
	out         chan<- Batch
	disabled    bool      // the stream is DISABLING or DISABLED: no shard gets new records
	nextRefresh time.Time // when the shard list is read again
	caughtUpAt  time.Time // when the last empty CaughtUp batch was sent; zero after records
}

func (r *dynamoRun) run(ctx context.Context) error {
	if err := r.checkStream(ctx); err != nil {
		return err
	}
	if err := r.refresh(ctx); err != nil {
		return err
	}
	if err := r.checkRetention(); err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		now := r.d.cfg.Now()
		if !now.Before(r.nextRefresh) {
			if err := r.refresh(ctx); err != nil {
				return err
			}
		}
		st := r.next()
		if st == nil && r.disabled {
			return fmt.Errorf("%s: stream %s was disabled and every shard is read: writes since are not recorded: %w", r.d.Name(), r.set.stream, ErrInvalidated)
		}
		if st == nil || st.due.After(now) {
			if err := r.sendCaughtUp(ctx, now); err != nil {
				return err
			}
			if st == nil {
				// Every shard is done or waits for a parent the list does not show yet: look
				// for the children soon rather than at the next Refresh.
				r.nextRefresh = minTime(r.nextRefresh, now.Add(r.d.cfg.MaxIdle))
			}
			wake := r.nextRefresh
			if st != nil {
				wake = minTime(wake, st.due)
			}
			if err := sleepCtx(ctx, wake.Sub(now)); err != nil {
				return err
			}
			continue
		}
		if err := r.poll(ctx, st); err != nil {
			return err
		}
	}
}

// checkStream fails when the table's stream is no longer the position's: writes between the two
// streams were recorded in neither.
func (r *dynamoRun) checkStream(ctx context.Context) error {
	arn, err := r.d.resolveStream(ctx)
	if err != nil {
		return err
	}
	if arn != r.set.stream {
		return r.d.lost(fmt.Sprintf("the table's stream is now %s, the position's was %s", arn, r.set.stream), nil)
	}
	return nil
}

// checkRetention fails when a shard's undelivered records may be older than the retention.
func (r *dynamoRun) checkRetention() error {
	at, id, ok := r.set.oldest()
	if !ok {
		return nil
	}
	if age := r.d.cfg.Now().Sub(at); age > r.d.cfg.Retention {
		return r.d.lost(fmt.Sprintf("shard %s has records undelivered since %s, %s ago, longer than the stream keeps them (%s)",
			id, at.UTC().Format(time.RFC3339), age.Round(time.Second), r.d.cfg.Retention), nil)
	}
	return nil
}

// refresh reads the shard list: new shards join the set (read from their trim horizon once
// their parent is done), done shards the stream no longer lists leave it, and a shard not done
// that the stream no longer lists has lost its records.
func (r *dynamoRun) refresh(ctx context.Context) error {
	shards, status, err := r.d.describe(ctx, r.set.stream)
	if err != nil {
		return err
	}
	r.disabled = disabledStatus(status)
	for _, st := range r.set.order {
		st.listed = false
	}
	dflt, _, ok := r.set.oldest()
	if !ok {
		dflt = r.d.cfg.Now()
	}
	for _, sh := range shards {
		id := aws.ToString(sh.ShardId)
		if st := r.set.byID[id]; st != nil {
			st.listed = true
			continue
		}
		// Every record of a new shard was written after its parent's last record.
		at := dflt
		if p := r.set.byID[aws.ToString(sh.ParentShardId)]; p != nil {
			at = p.At
		}
		r.set.add(&shardState{dynamoShardAt: dynamoShardAt{ID: id, Parent: aws.ToString(sh.ParentShardId), At: at}, listed: true})
		r.d.log.Debug("new shard", "shard", id, "parent", aws.ToString(sh.ParentShardId))
	}
	for _, st := range r.set.order {
		if !st.listed && !st.Done {
			what := "its records were trimmed before they were read"
			if st.Seq != "" {
				what = "its records after sequence number " + st.Seq + " were trimmed"
			}
			return r.d.lost(fmt.Sprintf("shard %s is no longer in the stream: %s", st.ID, what), nil)
		}
	}
	r.set.remove(func(st *shardState) bool { return !st.listed })
	r.nextRefresh = r.d.cfg.Now().Add(r.d.cfg.Refresh)
	return nil
}

// next returns the readable shard due soonest, or nil.
func (r *dynamoRun) next() *shardState {
	var best *shardState
	for _, st := range r.set.order {
		if r.set.readable(st) && (best == nil || st.due.Before(best.due)) {
			best = st
		}
	}
	return best
}

// sendCaughtUp sends an empty CaughtUp batch when every readable shard answered no records and
// none was sent since the last records, or IdleCheckpoint ago.
func (r *dynamoRun) sendCaughtUp(ctx context.Context, now time.Time) error {
	readable := false
	for _, st := range r.set.order {
		if r.set.readable(st) {
			if !st.caughtUp {
				return nil
			}
			readable = true
		}
	}
	if !readable || !r.caughtUpAt.IsZero() && now.Sub(r.caughtUpAt) < r.d.cfg.IdleCheckpoint {
		return nil
	}
	r.caughtUpAt = now
	return r.send(ctx, nil, now, true)
}

// poll reads one shard once and sends what it found.
func (r *dynamoRun) poll(ctx context.Context, st *shardState) error {
	d := r.d
	if st.iter == nil {
		if st.Seq == "" {
			// A trim horizon silently skips trimmed records: check their age first.
			if age := d.cfg.Now().Sub(st.At); age > d.cfg.Retention {
				return d.lost(fmt.Sprintf("shard %s was not read for %s, longer than the stream keeps records (%s)",
					st.ID, age.Round(time.Second), d.cfg.Retention), nil)
			}
		}
		iter, err := d.iterator(ctx, r.set.stream, st.ID, st.Seq)
		if err != nil {
			return err
		}
		st.iter = iter
	}
	start := d.cfg.Now()
	out, err := d.cfg.Streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: st.iter, Limit: aws.Int32(d.cfg.Limit)})
	var (
		expired *types.ExpiredIteratorException
		trimmed *types.TrimmedDataAccessException
		nf      *types.ResourceNotFoundException
	)
	switch {
	case errors.As(err, &expired):
		// Iterators live 15 minutes (longer than out may stay full): get one from the checkpoint.
		st.iter = nil
		if st.expiries++; st.expiries > dynamoMaxExpiries {
			return fmt.Errorf("%s: shard %s: %d fresh iterators expired in a row: %w", d.Name(), st.ID, st.expiries, err)
		}
		d.log.Debug("iterator expired; again from the checkpoint", "shard", st.ID, "seq", st.Seq)
		return nil
	case errors.As(err, &trimmed):
		return d.lost(fmt.Sprintf("shard %s: the records after sequence number %q were trimmed while being read", st.ID, st.Seq), err)
	case errors.As(err, &nf):
		// The refresh tells a trimmed shard (history lost) from a deleted stream (invalidated).
		st.iter = nil
		if st.expiries++; st.expiries > dynamoMaxExpiries {
			return fmt.Errorf("%s: shard %s: not found %d times in a row though the stream lists it: %w", d.Name(), st.ID, st.expiries, err)
		}
		return r.refresh(ctx)
	case err != nil:
		return fmt.Errorf("%s: reading shard %s after %q: %w", d.Name(), st.ID, st.Seq, err)
	}
	st.expiries = 0
	changes, newest, bad := r.changes(st, out.Records)
	if bad != nil {
		// Deliver the records before the bad one, then stop: the checkpoint stays before it.
		st.iter = nil
		if len(changes) > 0 {
			if err := r.send(ctx, changes, newest, false); err != nil {
				return err
			}
		}
		return bad
	}
	st.iter = out.NextShardIterator
	closed := st.iter == nil
	if len(out.Records) == 0 {
		st.At, st.caughtUp = start, true
		st.idle = min(max(2*st.idle, d.cfg.MinPoll), d.cfg.MaxIdle)
		st.due = d.cfg.Now().Add(st.idle)
	} else {
		st.caughtUp, st.idle = false, 0
		st.due = start.Add(d.cfg.MinPoll)
		r.caughtUpAt = time.Time{}
	}
	if closed {
		st.Done = true
		r.nextRefresh = time.Time{} // find its children now
		d.log.Debug("shard closed and read", "shard", st.ID, "seq", st.Seq)
	}
	if len(out.Records) == 0 && !closed {
		return nil
	}
	return r.send(ctx, changes, newest, false)
}

// changes turns records into changes and moves the shard's checkpoint past them. At a record
// it cannot use it stops: it returns the changes before it, with the checkpoint after them, and
// the error.
func (r *dynamoRun) changes(st *shardState, recs []types.Record) ([]Change, time.Time, error) {
	var (
		changes = make([]Change, 0, len(recs))
		newest  time.Time
		others  int
	)
	seq, at := st.Seq, st.At
	defer func() { st.Seq, st.At = seq, at }()
	for _, rec := range recs {
		s, err := recordSeq(rec)
		if err != nil {
			return changes, newest, fmt.Errorf("%s: shard %s after %q: %w", r.d.Name(), st.ID, seq, err)
		}
		c, ours, err := r.change(rec)
		if err != nil {
			return changes, newest, fmt.Errorf("%s: shard %s record %s: %w", r.d.Name(), st.ID, s, err)
		}
		seq = s
		if rec.Dynamodb.ApproximateCreationDateTime != nil {
			at = *rec.Dynamodb.ApproximateCreationDateTime
		}
		if !ours {
			others++
			continue
		}
		changes = append(changes, c)
		if c.At.After(newest) {
			newest = c.At
		}
	}
	if others > 0 {
		r.d.log.Debug("records of items of another sort key passed over", "shard", st.ID, "records", others)
	}
	return changes, newest, nil
}

// change turns one record into a change; ours is false for an item of another sort-key value.
func (r *dynamoRun) change(rec types.Record) (c Change, ours bool, err error) {
	switch rec.EventName {
	case types.OperationTypeInsert:
		c.Op = OpInsert
	case types.OperationTypeModify:
		c.Op = OpUpdate // DynamoDB does not tell a PutItem that replaced an item from an UpdateItem
	case types.OperationTypeRemove:
		c.Op = OpDelete
	default:
		return c, false, fmt.Errorf("event name %q, not INSERT, MODIFY or REMOVE: %w", rec.EventName, ErrDynamoRecord)
	}
	keys := make(map[string]ddbtypes.AttributeValue, len(rec.Dynamodb.Keys))
	for name, av := range rec.Dynamodb.Keys {
		switch v := av.(type) {
		case *types.AttributeValueMemberS:
			keys[name] = &ddbtypes.AttributeValueMemberS{Value: v.Value}
		case *types.AttributeValueMemberN:
			keys[name] = &ddbtypes.AttributeValueMemberN{Value: v.Value}
		case *types.AttributeValueMemberB:
			keys[name] = &ddbtypes.AttributeValueMemberB{Value: v.Value}
		default:
			return c, false, fmt.Errorf("key attribute %q is a %T, not S, N or B: %w", name, av, ErrDynamoRecord)
		}
	}
	if c.Key, ours, err = r.d.cfg.Table.ItemKey(keys); err != nil {
		return c, false, fmt.Errorf("%w: %w", ErrDynamoRecord, err)
	}
	if t := rec.Dynamodb.ApproximateCreationDateTime; t != nil {
		c.At = *t
	}
	return c, ours, nil
}

// send sends a batch with the set's position.
func (r *dynamoRun) send(ctx context.Context, changes []Change, at time.Time, caughtUp bool) error {
	pos, err := r.set.position()
	if err != nil {
		return err
	}
	select {
	case r.out <- Batch{Changes: changes, Position: pos, At: at, CaughtUp: caughtUp}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recordSeq is a record's sequence number, checked.
func recordSeq(rec types.Record) (string, error) {
	if rec.Dynamodb == nil || !isDigits(aws.ToString(rec.Dynamodb.SequenceNumber)) {
		return "", fmt.Errorf("a record without a valid sequence number: %w", ErrDynamoRecord)
	}
	return *rec.Dynamodb.SequenceNumber, nil
}

func closedShard(sh types.Shard) bool {
	return sh.SequenceNumberRange != nil && sh.SequenceNumberRange.EndingSequenceNumber != nil
}

func disabledStatus(s types.StreamStatus) bool {
	return s == types.StreamStatusDisabled || s == types.StreamStatusDisabling
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
