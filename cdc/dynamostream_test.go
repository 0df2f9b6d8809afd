package cdc_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/testenv"
)

// The DynamoDB Streams source against moto. moto's stream has one shard that never splits or
// closes and iterators that never expire: dynamostream_fake_test.go covers those with a fake.

// dynMotoStreams returns a DynamoDB Streams client for moto at endpoint.
func dynMotoStreams(endpoint string) *dynamodbstreams.Client {
	return dynamodbstreams.New(dynamodbstreams.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       testenv.MotoRegion,
		Credentials:  credentials.NewStaticCredentialsProvider(testenv.MotoAccessKey, testenv.MotoSecretKey, ""),
	})
}

// dynMotoTable provisions a table on moto at endpoint (DynamoStore.Provision, which enables the
// stream) and returns the store and a raw client for the test's own writes.
func dynMotoTable(t testing.TB, endpoint, table, keyType string, opts ...adapters.DynamoOption) (*adapters.DynamoStore, *dynamodb.Client) {
	t.Helper()
	ctx := context.Background()
	raw := dynamodb.New(dynamodb.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       testenv.MotoRegion,
		Credentials:  credentials.NewStaticCredentialsProvider(testenv.MotoAccessKey, testenv.MotoSecretKey, ""),
	})
	store, err := adapters.NewDynamoStore(ctx, table, "pk", append(opts, adapters.DynamoClient(raw))...)
	require.NoError(t, err)
	created, err := store.Provision(ctx, adapters.Provisioning{KeyType: keyType})
	require.NoError(t, err)
	require.True(t, created)
	return store, raw
}

// dynSource returns a source over store with fast polling for tests.
func dynSource(t testing.TB, api cdc.DynamoStreamsAPI, store *adapters.DynamoStore, tune func(*cdc.DynamoStreamConfig)) *cdc.DynamoStream {
	t.Helper()
	cfg := cdc.DynamoStreamConfig{Streams: api, Table: store, MinPoll: 5 * time.Millisecond, MaxIdle: 50 * time.Millisecond,
		Refresh: 200 * time.Millisecond, IdleCheckpoint: 200 * time.Millisecond, Log: dynLog(t)}
	if tune != nil {
		tune(&cfg)
	}
	s, err := cdc.NewDynamoStream(cfg)
	require.NoError(t, err)
	return s
}

// tail runs src from pos in the background and hands its batches to each until it returns
// false; it then stops the source and returns Run's error (nil when it stopped for each).
func dynTail(t testing.TB, src cdc.Source, pos cdc.Position, timeout time.Duration, each func(cdc.Batch) bool) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out := make(chan cdc.Batch, 4)
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, pos, out) }()
	for {
		select {
		case b := <-out:
			if !each(b) {
				cancel()
				<-done
				return nil
			}
		case err := <-done:
			if ctx.Err() != nil {
				t.Fatalf("%s: no end within %s", src.Name(), timeout)
			}
			// Run has returned, so nothing more is sent: the batches it sent before its error
			// may still be buffered (select picks at random between ready cases).
			for len(out) > 0 {
				if !each(<-out) {
					break
				}
			}
			return err
		}
	}
}

// dynSeen is a change as the tests compare it.
type dynSeen struct {
	Key any
	Op  cdc.Op
}

// dynPut writes an item; a failure fails the test without stopping the goroutine (writers run
// in their own), and false tells that goroutine to stop.
func dynPut(t testing.TB, c *dynamodb.Client, table string, item map[string]ddbtypes.AttributeValue) bool {
	t.Helper()
	_, err := c.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: item})
	return assert.NoError(t, err)
}

// dynDel deletes an item, as dynPut writes one.
func dynDel(t testing.TB, c *dynamodb.Client, table string, key map[string]ddbtypes.AttributeValue) bool {
	t.Helper()
	_, err := c.DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: aws.String(table), Key: key})
	return assert.NoError(t, err)
}

func dynNItem(pk string, sk string, extra string) map[string]ddbtypes.AttributeValue {
	return map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberN{Value: pk},
		"sk": &ddbtypes.AttributeValueMemberS{Value: sk}, "v": &ddbtypes.AttributeValueMemberS{Value: extra}}
}

// TestDynamoStreamMotoChanges: a table with a numeric partition key and a sort key, as a
// DynamoStore with a constant sort key uses it. Writes before Start are not delivered; after it,
// inserts, an identical PutItem (MODIFY), a changing PutItem (MODIFY) and a delete arrive in
// order, with the Keys the store's Get takes (N 5 is int32 5, a large N an int64), the record
// times as At; items of another sort-key value are passed over; a CaughtUp batch follows.
func TestDynamoStreamMotoChanges(t *testing.T) {
	m := testenv.StartMotoT(t)
	table := testenv.UniqueName("dyns")
	store, raw := dynMotoTable(t, m.Endpoint(), table, "N", adapters.DynamoSortKey("sk", "v2"))
	dynPut(t, raw, table, dynNItem("1", "v2", "before start"))
	src := dynSource(t, dynMotoStreams(m.Endpoint()), store, nil)
	assert.Equal(t, "dynamodb stream "+table, src.Name())
	pos, err := src.Start(context.Background())
	require.NoError(t, err)
	before := time.Now().Add(-time.Minute)

	dynPut(t, raw, table, dynNItem("5", "v2", "a"))
	dynPut(t, raw, table, dynNItem("5", "other", "not ours"))
	dynPut(t, raw, table, dynNItem("1099511627776", "v2", "a"))
	dynPut(t, raw, table, dynNItem("5", "v2", "a")) // identical: moto still records a MODIFY
	dynPut(t, raw, table, dynNItem("5", "v2", "b"))
	dynDel(t, raw, table, map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberN{Value: "1099511627776"}, "sk": &ddbtypes.AttributeValueMemberS{Value: "v2"}})

	want := []dynSeen{{int32(5), cdc.OpInsert}, {int64(1099511627776), cdc.OpInsert}, {int32(5), cdc.OpUpdate}, {int32(5), cdc.OpUpdate}, {int64(1099511627776), cdc.OpDelete}}
	var got []dynSeen
	caughtUp := false
	require.NoError(t, dynTail(t, src, pos, time.Minute, func(b cdc.Batch) bool {
		require.NotNil(t, b.Position)
		for _, c := range b.Changes {
			got = append(got, dynSeen{c.Key, c.Op})
			assert.True(t, c.At.After(before), "At %s is the record's time", c.At)
		}
		if len(b.Changes) > 0 {
			assert.False(t, b.CaughtUp)
		}
		caughtUp = b.CaughtUp && len(got) >= len(want)
		return !caughtUp
	}))
	assert.Equal(t, want, got)
	assert.True(t, caughtUp)

	// The key is the one the store reads: a converge by it finds the item.
	doc, err := store.Get(context.Background(), int32(5))
	require.NoError(t, err)
	assert.Equal(t, "b", doc[len(doc)-1].Value)
}

// TestDynamoStreamMotoResume stops a tail at a batch in the middle and resumes from that
// batch's position while more writes arrive: every change is delivered once, in order.
func TestDynamoStreamMotoResume(t *testing.T) {
	m := testenv.StartMotoT(t)
	table := testenv.UniqueName("dyns")
	store, raw := dynMotoTable(t, m.Endpoint(), table, "S")
	src := dynSource(t, dynMotoStreams(m.Endpoint()), store, func(c *cdc.DynamoStreamConfig) { c.Limit = 7 })
	pos, err := src.Start(context.Background())
	require.NoError(t, err)
	sItem := func(k, v string) map[string]ddbtypes.AttributeValue {
		return map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: k}, "v": &ddbtypes.AttributeValueMemberS{Value: v}}
	}
	var want []dynSeen
	for i := range 60 {
		k := fmt.Sprintf("k%03d", i)
		dynPut(t, raw, table, sItem(k, "1"))
		want = append(want, dynSeen{k, cdc.OpInsert})
	}
	var got []dynSeen
	var saved cdc.Position
	batches := 0
	require.NoError(t, dynTail(t, src, pos, time.Minute, func(b cdc.Batch) bool {
		for _, c := range b.Changes {
			got = append(got, dynSeen{c.Key, c.Op})
		}
		saved = b.Position
		batches++
		return batches < 4
	}))
	require.Len(t, got, 4*7, "four full batches of 7")

	// More writes while stopped and while the resumed tail runs.
	for i := range 20 {
		k := fmt.Sprintf("k%03d", i)
		dynPut(t, raw, table, sItem(k, "2"))
		want = append(want, dynSeen{k, cdc.OpUpdate})
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 60; i < 90; i++ {
			k := fmt.Sprintf("k%03d", i)
			if !dynPut(t, raw, table, sItem(k, "1")) {
				return
			}
		}
	})
	for i := 60; i < 90; i++ {
		want = append(want, dynSeen{fmt.Sprintf("k%03d", i), cdc.OpInsert})
	}
	require.NoError(t, dynTail(t, src, saved, time.Minute, func(b cdc.Batch) bool {
		for _, c := range b.Changes {
			got = append(got, dynSeen{c.Key, c.Op})
		}
		return len(got) < len(want)
	}))
	wg.Wait()
	assert.Equal(t, want, got, "every change once, in order, across the restart")
}

// TestDynamoStreamMotoStartThenWrites takes Start while a backlog sits in the shard (read to
// its end in pages of 10) and writes right after it returns, concurrently with Run(nil-free):
// everything written after Start is delivered, nothing written before it.
func TestDynamoStreamMotoStartThenWrites(t *testing.T) {
	m := testenv.StartMotoT(t)
	table := testenv.UniqueName("dyns")
	store, raw := dynMotoTable(t, m.Endpoint(), table, "S")
	src := dynSource(t, dynMotoStreams(m.Endpoint()), store, func(c *cdc.DynamoStreamConfig) { c.Limit = 10 })
	item := func(k string) map[string]ddbtypes.AttributeValue {
		return map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: k}}
	}
	for i := range 45 {
		dynPut(t, raw, table, item(fmt.Sprintf("old%03d", i)))
	}
	pos, err := src.Start(context.Background())
	require.NoError(t, err)
	const n = 150
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			if !dynPut(t, raw, table, item(fmt.Sprintf("new%03d", i))) {
				return
			}
		}
	})
	got := map[any]int{}
	require.NoError(t, dynTail(t, src, pos, 2*time.Minute, func(b cdc.Batch) bool {
		for _, c := range b.Changes {
			got[c.Key]++
		}
		return len(got) < n
	}))
	wg.Wait()
	for i := range n {
		assert.Equal(t, 1, got[fmt.Sprintf("new%03d", i)], "new%03d", i)
	}
	assert.Len(t, got, n, "nothing written before Start")
}

// TestDynamoStreamMotoRunFromNow: Run with a nil position starts from now.
func TestDynamoStreamMotoRunFromNow(t *testing.T) {
	m := testenv.StartMotoT(t)
	table := testenv.UniqueName("dyns")
	store, raw := dynMotoTable(t, m.Endpoint(), table, "S")
	dynPut(t, raw, table, map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "before"}})
	src := dynSource(t, dynMotoStreams(m.Endpoint()), store, nil)
	var got []dynSeen
	wrote := false
	require.NoError(t, dynTail(t, src, nil, time.Minute, func(b cdc.Batch) bool {
		for _, c := range b.Changes {
			got = append(got, dynSeen{c.Key, c.Op})
		}
		if b.CaughtUp && !wrote { // Run has taken its start: write now
			dynPut(t, raw, table, map[string]ddbtypes.AttributeValue{"pk": &ddbtypes.AttributeValueMemberS{Value: "after"}})
			wrote = true
		}
		return len(got) == 0
	}))
	assert.Equal(t, []dynSeen{{"after", cdc.OpInsert}}, got)
}

// dynLog is the sources' logger: the test's log with TANDEM_TEST_LOG set, else nothing.
func dynLog(t testing.TB) *slog.Logger {
	if os.Getenv("TANDEM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(dynLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type dynLogWriter struct{ tb testing.TB }

func (w dynLogWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
