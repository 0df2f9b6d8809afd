package cdc_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// fakeStreams is a fake DynamoDB Streams service, a test double for what moto does not do: it
// splits and closes shards, expires iterators, trims records, pages DescribeStream and can
// disable or delete its stream. It serves one stream of one table. Sequence numbers grow by 10
// across the stream (DynamoDB's are not dense either).
type fakeStreams struct {
	mu       sync.Mutex
	table    string
	arn      string
	status   types.StreamStatus
	deleted  bool
	shards   []*fakeShard
	iters    map[string]*fakeIter
	nextIter int
	seq      int64
	page     int // shards per DescribeStream page
	calls    map[string]int
	// getRecordsHook, when set, runs (unlocked) before each GetRecords.
	getRecordsHook func(shard string)
}

type fakeShard struct {
	id, parent string
	records    []types.Record
	trimmed    int // records[:trimmed] are gone
	closed     bool
	gone       bool // trimmed away whole: DescribeStream no longer lists it
}

type fakeIter struct {
	shard   *fakeShard
	next    int // index into records
	expired bool
}

func newFakeStreams(table string) *fakeStreams {
	f := &fakeStreams{table: table, arn: "arn:aws:dynamodb:us-east-1:000000000000:table/" + table + "/stream/2026-12-01T00:00:00.000",
		status: types.StreamStatusEnabled, iters: map[string]*fakeIter{}, seq: 1000, page: 2, calls: map[string]int{}}
	f.shards = append(f.shards, &fakeShard{id: "shard-0000"})
	return f
}

func (f *fakeStreams) shard(id string) *fakeShard {
	for _, s := range f.shards {
		if s.id == id {
			return s
		}
	}
	return nil
}

// put appends a record for key pk (an S attribute) to shard id; it returns its sequence number.
func (f *fakeStreams) put(id, pk string, op types.OperationType) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.putLocked(id, op, map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}})
}

func (f *fakeStreams) putLocked(id string, op types.OperationType, keys map[string]types.AttributeValue) string {
	s := f.shard(id)
	if s == nil || s.closed {
		panic("fakeStreams: put on shard " + id + " that is missing or closed")
	}
	f.seq += 10
	seq := strconv.FormatInt(f.seq, 10)
	now := time.Now()
	s.records = append(s.records, types.Record{EventName: op, Dynamodb: &types.StreamRecord{
		Keys: keys, SequenceNumber: aws.String(seq), ApproximateCreationDateTime: &now, StreamViewType: types.StreamViewTypeKeysOnly}})
	return seq
}

// split closes shard parent and opens children.
func (f *fakeStreams) split(parent string, children ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shard(parent).closed = true
	for _, c := range children {
		f.shards = append(f.shards, &fakeShard{id: c, parent: parent})
	}
}

// expireAll expires every iterator handed out so far.
func (f *fakeStreams) expireAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, it := range f.iters {
		it.expired = true
	}
}

// trim drops the first n records of shard id.
func (f *fakeStreams) trim(id string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shard(id).trimmed = n
}

// drop removes shard id from the stream, as DynamoDB does once all its records are trimmed.
func (f *fakeStreams) drop(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shard(id).gone = true
}

func (f *fakeStreams) setStatus(s types.StreamStatus, deleted bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.deleted = s, deleted
	if s == types.StreamStatusDisabled {
		for _, sh := range f.shards {
			sh.closed = true
		}
	}
}

func (f *fakeStreams) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

func (f *fakeStreams) notFound() error {
	return &types.ResourceNotFoundException{Message: aws.String("Requested resource not found: Stream: " + f.arn + " not found")}
}

func (f *fakeStreams) ListStreams(_ context.Context, in *dynamodbstreams.ListStreamsInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.ListStreamsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["ListStreams"]++
	out := &dynamodbstreams.ListStreamsOutput{}
	if !f.deleted && aws.ToString(in.TableName) == f.table {
		out.Streams = []types.Stream{{StreamArn: aws.String(f.arn), TableName: aws.String(f.table), StreamLabel: aws.String("2026-12-01T00:00:00.000")}}
	}
	return out, nil
}

func (f *fakeStreams) DescribeStream(_ context.Context, in *dynamodbstreams.DescribeStreamInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["DescribeStream"]++
	if f.deleted || aws.ToString(in.StreamArn) != f.arn {
		return nil, f.notFound()
	}
	var listed []*fakeShard
	for _, s := range f.shards {
		if !s.gone {
			listed = append(listed, s)
		}
	}
	start := 0
	if after := aws.ToString(in.ExclusiveStartShardId); after != "" {
		for i, s := range listed {
			if s.id == after {
				start = i + 1
			}
		}
	}
	end := min(start+f.page, len(listed))
	desc := &types.StreamDescription{StreamArn: aws.String(f.arn), StreamStatus: f.status, TableName: aws.String(f.table)}
	for _, s := range listed[start:end] {
		sh := types.Shard{ShardId: aws.String(s.id), SequenceNumberRange: &types.SequenceNumberRange{StartingSequenceNumber: aws.String("0")}}
		if s.parent != "" {
			sh.ParentShardId = aws.String(s.parent)
		}
		if s.closed {
			sh.SequenceNumberRange.EndingSequenceNumber = aws.String(strconv.FormatInt(f.seq+1, 10))
		}
		desc.Shards = append(desc.Shards, sh)
	}
	if end < len(listed) {
		desc.LastEvaluatedShardId = aws.String(listed[end-1].id)
	}
	return &dynamodbstreams.DescribeStreamOutput{StreamDescription: desc}, nil
}

func (f *fakeStreams) GetShardIterator(_ context.Context, in *dynamodbstreams.GetShardIteratorInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["GetShardIterator"]++
	if f.deleted {
		return nil, f.notFound()
	}
	s := f.shard(aws.ToString(in.ShardId))
	if s == nil || s.gone {
		return nil, &types.ResourceNotFoundException{Message: aws.String("shard " + aws.ToString(in.ShardId) + " not found")}
	}
	it := &fakeIter{shard: s, next: s.trimmed}
	switch in.ShardIteratorType {
	case types.ShardIteratorTypeTrimHorizon:
	case types.ShardIteratorTypeAfterSequenceNumber:
		want := aws.ToString(in.SequenceNumber)
		i := -1
		for j, r := range s.records {
			if *r.Dynamodb.SequenceNumber == want {
				i = j
			}
		}
		switch {
		case i < 0:
			return nil, fmt.Errorf("fakeStreams: sequence number %s is not in shard %s", want, s.id)
		case i+1 < s.trimmed:
			return nil, &types.TrimmedDataAccessException{Message: aws.String("records after " + want + " were trimmed")}
		}
		it.next = i + 1
	default:
		return nil, fmt.Errorf("fakeStreams: iterator type %s not served", in.ShardIteratorType)
	}
	return &dynamodbstreams.GetShardIteratorOutput{ShardIterator: aws.String(f.newIter(it))}, nil
}

func (f *fakeStreams) newIter(it *fakeIter) string {
	f.nextIter++
	id := "iter-" + strconv.Itoa(f.nextIter)
	f.iters[id] = it
	return id
}

func (f *fakeStreams) GetRecords(_ context.Context, in *dynamodbstreams.GetRecordsInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	if f.getRecordsHook != nil {
		f.mu.Lock()
		it := f.iters[aws.ToString(in.ShardIterator)]
		f.mu.Unlock()
		if it != nil {
			f.getRecordsHook(it.shard.id)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["GetRecords"]++
	it := f.iters[aws.ToString(in.ShardIterator)]
	switch {
	case f.deleted:
		return nil, f.notFound()
	case it == nil:
		return nil, errors.New("fakeStreams: unknown iterator")
	case it.expired:
		return nil, &types.ExpiredIteratorException{Message: aws.String("Iterator expired")}
	case it.shard.gone:
		return nil, &types.ResourceNotFoundException{Message: aws.String("shard " + it.shard.id + " not found")}
	case it.next < it.shard.trimmed:
		return nil, &types.TrimmedDataAccessException{Message: aws.String("the iterator points at trimmed records")}
	}
	s := it.shard
	end := min(it.next+int(aws.ToInt32(in.Limit)), len(s.records))
	out := &dynamodbstreams.GetRecordsOutput{Records: append([]types.Record(nil), s.records[it.next:end]...)}
	if end < len(s.records) || !s.closed {
		out.NextShardIterator = aws.String(f.newIter(&fakeIter{shard: s, next: end}))
	}
	return out, nil
}
