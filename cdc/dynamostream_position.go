package cdc

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// dynamoPositionVersion is the version of the position document a DynamoStream writes. A
// position of a higher version was written by a newer tandem and is refused.
const dynamoPositionVersion = 1

// dynamoPositionSource marks a position as a DynamoStream's, so that another source's
// position (a change stream's resume token) is refused with a clear error.
const dynamoPositionSource = "dynamodb-streams"

// dynamoPosition is a DynamoStream's Position: the stream and, for every shard the stream
// still lists, how far it has been delivered.
type dynamoPosition struct {
	Source  string          `bson:"source"`
	Version int             `bson:"v"`
	Stream  string          `bson:"stream"`
	Shards  []dynamoShardAt `bson:"shards"`
}

// dynamoShardAt is one shard's checkpoint.
type dynamoShardAt struct {
	ID     string `bson:"id"`
	Parent string `bson:"parent,omitempty"`
	// Seq is the sequence number of the last record delivered; reading resumes after it. Empty:
	// nothing of the shard was delivered, reading starts at its trim horizon.
	Seq string `bson:"seq,omitempty"`
	// At bounds the shard's undelivered records: each was written at or after At. A position
	// whose undelivered records may have been written longer than the stream's retention ago
	// has lost history.
	At time.Time `bson:"at"`
	// Done says every record of the closed shard was delivered; its children may be read.
	Done bool `bson:"done,omitempty"`
}

// encodePosition renders p as the BSON document a tailer saves.
func encodePosition(p *dynamoPosition) (Position, error) {
	b, err := bson.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encoding a DynamoDB stream position: %w", err)
	}
	return Position(b), nil
}

// decodePosition reads and checks a position this source wrote.
func decodePosition(raw Position) (*dynamoPosition, error) {
	if err := raw.Validate(); err != nil {
		return nil, fmt.Errorf("DynamoDB stream position: not a BSON document: %w", err)
	}
	var p dynamoPosition
	if err := bson.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("DynamoDB stream position %s: %w", raw, err)
	}
	if p.Source != dynamoPositionSource {
		return nil, fmt.Errorf("DynamoDB stream position: source is %q, not %q (a position of another kind of source)", p.Source, dynamoPositionSource)
	}
	if p.Version > dynamoPositionVersion {
		return nil, fmt.Errorf("DynamoDB stream position: version %d was written by a newer tandem (this one reads up to %d)", p.Version, dynamoPositionVersion)
	}
	if p.Version < 1 {
		return nil, fmt.Errorf("DynamoDB stream position: version %d is invalid", p.Version)
	}
	if p.Stream == "" {
		return nil, errors.New("DynamoDB stream position: no stream ARN")
	}
	seen := make(map[string]bool, len(p.Shards))
	for i, s := range p.Shards {
		switch {
		case s.ID == "":
			return nil, fmt.Errorf("DynamoDB stream position: shard %d has no id", i)
		case seen[s.ID]:
			return nil, fmt.Errorf("DynamoDB stream position: shard %s appears twice", s.ID)
		case s.Seq != "" && !isDigits(s.Seq):
			return nil, fmt.Errorf("DynamoDB stream position: shard %s: sequence number %q is not a decimal number", s.ID, s.Seq)
		}
		seen[s.ID] = true
	}
	return &p, nil
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// shardState is what a running DynamoStream knows of one shard: its checkpoint and, while it
// is read, its iterator and polling schedule.
type shardState struct {
	dynamoShardAt
	iter     *string       // nil: get one from the checkpoint
	due      time.Time     // the earliest time of the next GetRecords
	idle     time.Duration // the current wait after an empty answer
	caughtUp bool          // the last GetRecords returned no records
	expiries int           // fresh iterators that expired (or whose shard was not found) in a row
	listed   bool          // the last DescribeStream listed the shard
}

// shardSet is the shards of one stream in the order they were found (parents before their
// children), indexed by id.
type shardSet struct {
	stream string
	order  []*shardState
	byID   map[string]*shardState
}

func newShardSet(p *dynamoPosition) *shardSet {
	s := &shardSet{stream: p.Stream, byID: make(map[string]*shardState, len(p.Shards))}
	for _, sh := range p.Shards {
		s.add(&shardState{dynamoShardAt: sh})
	}
	return s
}

func (s *shardSet) add(st *shardState) {
	s.order = append(s.order, st)
	s.byID[st.ID] = st
}

// remove drops the shards for which drop is true.
func (s *shardSet) remove(drop func(*shardState) bool) {
	s.order = slices.DeleteFunc(s.order, func(st *shardState) bool {
		if drop(st) {
			delete(s.byID, st.ID)
			return true
		}
		return false
	})
}

// readable reports whether st may be read now: it is not done, and its parent (if the set
// still holds it) is done, so a key's changes in the parent come before those in the child.
func (s *shardSet) readable(st *shardState) bool {
	if st.Done {
		return false
	}
	p := s.byID[st.Parent]
	return st.Parent == "" || p == nil || p.Done
}

// position renders the set's checkpoints.
func (s *shardSet) position() (Position, error) {
	p := &dynamoPosition{Source: dynamoPositionSource, Version: dynamoPositionVersion, Stream: s.stream,
		Shards: make([]dynamoShardAt, len(s.order))}
	for i, st := range s.order {
		p.Shards[i] = st.dynamoShardAt
	}
	return encodePosition(p)
}

// oldest is the earliest At of the shards not done: every undelivered record was written at or
// after it. ok is false when every shard is done.
func (s *shardSet) oldest() (at time.Time, id string, ok bool) {
	for _, st := range s.order {
		if !st.Done && (!ok || st.At.Before(at)) {
			at, id, ok = st.At, st.ID, true
		}
	}
	return at, id, ok
}
