package adapters

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrJournalClosed means Consume stopped because its Kafka client was closed.
var ErrJournalClosed = errors.New("journal consumer closed")

// Consume reads the journal as a member of consumer group group and calls handle with batches
// of entries until ctx ends (it then returns ctx's error) or the client fails for good.
//
// A batch holds entries of one partition in offset order (at most MaxBatch); batches of
// different partitions are handled concurrently, so handle must be safe for concurrent use.
// When handle returns nil the batch's offsets are committed, synchronously; when it returns an
// error the same batch is handed to it again after a backoff (exponential from RetryMin to
// RetryMax, with jitter) until it succeeds or the partition is revoked or ctx ends. Nothing is
// skipped and nothing is committed before it has been handled: delivery is at least once, in
// order per partition (hence per key), and a record may be handled again after a crash or a
// rebalance.
//
// Records that cannot be decoded are not given to handle: each is logged, counted and passed
// to OnBadRecord, and only once that has succeeded is it committed past with its batch.
//
// The ctx given to handle is canceled when the batch's partition is revoked (another member
// will handle it from the last commit) or when Consume's ctx ends; handle should then return
// promptly. Revocation waits for handling of the revoked partitions to stop, so offsets are
// never committed for a partition this member no longer owns.
func (j *KafkaJournal) Consume(ctx context.Context, group string, handle func(ctx context.Context, batch []JournalEntry) error) error {
	if group == "" {
		return errors.New("kafka journal: consume: no group")
	}
	if handle == nil {
		return errors.New("kafka journal: consume: no handler")
	}
	c := &consumer{j: j, group: group, handle: handle, base: ctx, claims: map[topicPartition]*claim{}}
	cl, err := kgo.NewClient(j.opts(
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(j.cfg.Topic),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), // a new group reads the whole journal
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.revoked),
	)...)
	if err != nil {
		return fmt.Errorf("kafka journal: creating consumer of group %s: %w", group, err)
	}
	// Close leaves the group, which revokes every partition; nothing is being handled by then.
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		if fetches.IsClientClosed() {
			return ErrJournalClosed
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			j.m.fetchErrors.Inc()
			j.log.Warn("journal fetch error", "group", group, "topic", topic, "partition", partition, "err", err)
		})
		var wg sync.WaitGroup
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			cla := c.claim(topicPartition{p.Topic, p.Partition})
			if cla == nil {
				return // revoked since the fetch: the next owner reads these records
			}
			wg.Go(func() {
				defer cla.inflight.Done()
				c.process(cla, cl, p)
			})
		})
		wg.Wait()
	}
}

type topicPartition struct {
	topic     string
	partition int32
}

// claim is this member's ownership of one partition, from assignment to revocation.
type claim struct {
	ctx      context.Context
	cancel   context.CancelFunc
	inflight sync.WaitGroup // batches of this partition being processed
}

// consumer is the state of one Consume call.
type consumer struct {
	j      *KafkaJournal
	group  string
	handle func(context.Context, []JournalEntry) error
	base   context.Context

	mu     sync.Mutex
	claims map[topicPartition]*claim
}

func (c *consumer) assigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, ps := range assigned {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			if c.claims[tp] == nil {
				ctx, cancel := context.WithCancel(c.base)
				c.claims[tp] = &claim{ctx: ctx, cancel: cancel}
			}
		}
	}
	c.j.log.Debug("journal partitions assigned", "group", c.group, "partitions", assigned)
}

// revoked ends the claims on the partitions taken away and waits until none of their batches
// is being processed, so that no commit for them follows the revocation.
func (c *consumer) revoked(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	var ended []*claim
	c.mu.Lock()
	for topic, ps := range lost {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			if cla := c.claims[tp]; cla != nil {
				cla.cancel()
				delete(c.claims, tp)
				ended = append(ended, cla)
			}
		}
	}
	c.mu.Unlock()
	for _, cla := range ended {
		cla.inflight.Wait()
	}
	if len(ended) > 0 {
		c.j.log.Debug("journal partitions revoked", "group", c.group, "partitions", lost)
	}
}

// claim returns the live claim on tp with one more batch in flight, or nil if tp is not owned.
func (c *consumer) claim(tp topicPartition) *claim {
	c.mu.Lock()
	defer c.mu.Unlock()
	cla := c.claims[tp]
	if cla == nil || cla.ctx.Err() != nil {
		return nil
	}
	cla.inflight.Add(1)
	return cla
}

// process handles the records of one partition, batch after batch, committing each. It stops
// when the claim ends.
func (c *consumer) process(cla *claim, cl *kgo.Client, p kgo.FetchTopicPartition) {
	for recs := range slices.Chunk(p.Records, c.j.cfg.MaxBatch) {
		if c.processBatch(cla, cl, p, recs) != nil {
			return
		}
	}
}

func (c *consumer) processBatch(cla *claim, cl *kgo.Client, p kgo.FetchTopicPartition, recs []*kgo.Record) error {
	j := c.j
	entries := make([]JournalEntry, 0, len(recs))
	var bad []BadRecord
	for _, r := range recs {
		e, err := decodeEntry(r.Value)
		if err != nil {
			bad = append(bad, BadRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value, Err: err})
			continue
		}
		e.Position = JournalPosition{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, HighWatermark: p.HighWatermark}
		entries = append(entries, e)
	}
	first, last := recs[0].Offset, recs[len(recs)-1].Offset
	for _, b := range bad {
		j.m.badRecords.Inc()
		j.log.Error("bad journal record: reported, will be committed past", "group", c.group, "topic", b.Topic, "partition", b.Partition, "offset", b.Offset, "err", b.Err)
		if j.cfg.OnBadRecord == nil {
			continue
		}
		err := c.retry(cla.ctx, "bad_record", p, b.Offset, b.Offset, func(ctx context.Context) error { return j.cfg.OnBadRecord(ctx, b) })
		if err != nil {
			return err
		}
	}
	if len(entries) > 0 {
		if err := c.retry(cla.ctx, "handle", p, first, last, func(ctx context.Context) error { return c.handle(ctx, entries) }); err != nil {
			return err
		}
	}
	err := c.retry(cla.ctx, "commit", p, first, last, func(ctx context.Context) error { return cl.CommitRecords(ctx, recs[len(recs)-1]) })
	if err != nil {
		return err
	}
	j.m.consumed.Add(float64(len(recs)))
	return nil
}

// retry calls fn until it returns nil or ctx ends, sleeping between attempts.
func (c *consumer) retry(ctx context.Context, stage string, p kgo.FetchTopicPartition, first, last int64, fn func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			if attempt > 1 {
				c.j.log.Info("journal batch succeeded after retries", "group", c.group, "stage", stage, "partition", p.Partition, "offsets", fmt.Sprintf("%d-%d", first, last), "attempts", attempt)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := backoff(c.j.cfg.RetryMin, c.j.cfg.RetryMax, attempt)
		c.j.m.retries.WithLabelValues(stage).Inc()
		c.j.log.Warn("journal batch failed; retrying", "group", c.group, "stage", stage, "topic", p.Topic, "partition", p.Partition,
			"offsets", fmt.Sprintf("%d-%d", first, last), "attempt", attempt, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// backoff returns the wait after the attempt-th failure: min·2^(attempt-1), capped at max, of
// which a random half is taken off (so consumers that failed together do not retry together).
func backoff(lo, hi time.Duration, attempt int) time.Duration {
	d := hi
	if attempt < 32 && lo<<(attempt-1) < hi && lo<<(attempt-1) > 0 {
		d = lo << (attempt - 1)
	}
	return d/2 + rand.N(d/2+1)
}
