package cdc_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/testenv"
)

// BenchmarkDynamoStreamMoto reads 300 changes from moto's stream with the source (from a
// Start position), and with a raw loop of GetRecords over the same records in the same run:
// records/s of each and their ratio.
func BenchmarkDynamoStreamMoto(b *testing.B) {
	m := testenv.StartMotoT(b)
	table := testenv.UniqueName("dynbench")
	store, raw := dynMotoTable(b, m.Endpoint(), table, "S")
	api := dynMotoStreams(m.Endpoint())
	src := dynSource(b, api, store, nil)
	pos, err := src.Start(context.Background())
	require.NoError(b, err)
	const n = 300
	for i := range n {
		dynPut(b, raw, table, map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: fmt.Sprintf("k%04d", i)}})
	}
	var srcTime, rawTime time.Duration
	for b.Loop() {
		start := time.Now()
		got := 0
		require.NoError(b, dynTail(b, src, pos, time.Minute, func(bt cdc.Batch) bool {
			got += len(bt.Changes)
			return got < n
		}))
		srcTime += time.Since(start)

		start = time.Now()
		require.Equal(b, n, rawRead(b, api, table))
		rawTime += time.Since(start)
	}
	iters := float64(b.N)
	b.ReportMetric(n*iters/srcTime.Seconds(), "source_records/s")
	b.ReportMetric(n*iters/rawTime.Seconds(), "raw_records/s")
	b.ReportMetric(rawTime.Seconds()/srcTime.Seconds(), "source/raw")
}

// rawRead reads the table's one moto shard from its trim horizon to the end: the least any
// reader does.
func rawRead(b *testing.B, api *dynamodbstreams.Client, table string) int {
	ctx := context.Background()
	ls, err := api.ListStreams(ctx, &dynamodbstreams.ListStreamsInput{TableName: aws.String(table)})
	require.NoError(b, err)
	arn := ls.Streams[0].StreamArn
	ds, err := api.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: arn})
	require.NoError(b, err)
	it, err := api.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: arn,
		ShardId: ds.StreamDescription.Shards[0].ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon})
	require.NoError(b, err)
	iter, got := it.ShardIterator, 0
	for {
		out, err := api.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter, Limit: aws.Int32(1000)})
		require.NoError(b, err)
		if len(out.Records) == 0 {
			return got
		}
		got += len(out.Records)
		iter = out.NextShardIterator
	}
}

// BenchmarkDynamoStreamFake reads 20,000 records from fakeStreams (no network): the source's own
// cost per record.
func BenchmarkDynamoStreamFake(b *testing.B) {
	f := newFakeStreams("t")
	src := dynSource(b, f, fakeStore(b), func(c *cdc.DynamoStreamConfig) { c.MinPoll = time.Microsecond })
	pos, err := src.Start(context.Background())
	require.NoError(b, err)
	const n = 20000
	for i := range n {
		f.put("shard-0000", fmt.Sprintf("k%05d", i), types.OperationTypeInsert)
	}
	b.ResetTimer()
	for b.Loop() {
		got := 0
		require.NoError(b, dynTail(b, src, pos, time.Minute, func(bt cdc.Batch) bool {
			got += len(bt.Changes)
			return got < n
		}))
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkDynamoStreamIdle tails an idle stream of 3 open shards (and 2 closed) for 5 s with
// the default polling (MinPoll 200ms, MaxIdle 2s, Refresh 30s): calls a second, the ramp from
// MinPoll to MaxIdle included.
func BenchmarkDynamoStreamIdle(b *testing.B) {
	for b.Loop() {
		f := newFakeStreams("t")
		f.split("shard-0000", "shard-0001", "shard-0002")
		f.split("shard-0001", "shard-0003", "shard-0004")
		src, err := cdc.NewDynamoStream(cdc.DynamoStreamConfig{Streams: f, Table: fakeStore(b), Log: dynLog(b)})
		require.NoError(b, err)
		pos, err := src.Start(context.Background())
		require.NoError(b, err)
		before, describes := f.count("GetRecords"), f.count("DescribeStream")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out := make(chan cdc.Batch, 100)
		_ = src.Run(ctx, pos, out)
		cancel()
		b.ReportMetric(float64(f.count("GetRecords")-before)/5, "getrecords/s")
		b.ReportMetric(float64(f.count("DescribeStream")-describes)/5, "describestream/s")
	}
}
