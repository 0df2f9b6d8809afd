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
// A batch holds entries of one partition in offset order (at most MaxBatch). Each partition is
// handled by a goroutine of its own, so batches of different partitions are handled
// concurrently (handle must be safe for concurrent use) and a partition whose batch keeps
// failing does not hold up the others; its fetching is paused meanwhile. When handle returns
// nil the batch's offsets are committed, synchronously; when it returns an error the same batch
// is handed to it again after a backoff (exponential from RetryMin to RetryMax, with jitter)
// until it succeeds or the partition is revoked or ctx ends. Nothing is skipped and nothing is
// committed before it has been handled: delivery is at least once, in order per partition
// (hence per key), and a record may be handled again after a crash or a rebalance.
//
// Records that cannot be decoded are not given to handle: each is logged, counted and passed
// to OnBadRecord, and only once that has succeeded is it committed past with its batch.
//
// The ctx given to handle is canceled when the batch's partition is revoked (another member
// will handle it from the last commit) or when Consume's ctx ends; handle should then return
// promptly. Revocation waits for the revoked partitions' goroutines to stop, so offsets are
// never committed for a partition this member no longer owns.
func (j *KafkaJournal) Consume(ctx context.Context, group string, handle func(ctx context.Context, batch []JournalEntry) error) error {
	if group == "" {
		return errors.New("kafka journal: consume: no group")
	}
	if handle == nil {
		return errors.New("kafka journal: consume: no handler")
	}
	ctx, cancel := context.WithCancel(ctx)
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
		cancel()
		return fmt.Errorf("kafka journal: creating consumer of group %s: %w", group, err)
	}
	// Close leaves the group, which revokes every partition: the partitions' goroutines have
	// stopped by then.
	defer cl.Close()
	defer func() {
		cancel()
		c.workers.Wait()
	}()
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
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) > 0 {
				c.dispatch(cl, p)
			}
		})
	}
}

type topicPartition struct {
	topic     string
	partition int32
}

// claim is this member's ownership of one partition, from assignment to revocation, and the
// goroutine that handles its records.
type claim struct {
	tp     topicPartition
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has stopped
	wake   chan struct{}

	mu      sync.Mutex
	ended   bool
	pending []kgo.FetchTopicPartition // polled, not yet handled, in offset order
	paused  bool
}

// A partition's fetching is paused once this many polls wait for its goroutine, and resumed
// when it has taken them all. Records buffered for a paused partition are dropped by franz-go
// without moving its position, and fetched again after the resume.
const pauseAt = 2

// consumer is the state of one Consume call.
type consumer struct {
	j       *KafkaJournal
	group   string
	handle  func(context.Context, []JournalEntry) error
	base    context.Context
	workers sync.WaitGroup

	mu     sync.Mutex
	claims map[topicPartition]*claim
}

func (c *consumer) assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, ps := range assigned {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			if c.claims[tp] != nil {
				continue
			}
			ctx, cancel := context.WithCancel(c.base)
			cla := &claim{tp: tp, ctx: ctx, cancel: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1)}
			c.claims[tp] = cla
			c.workers.Add(1)
			go func() {
				defer c.workers.Done()
				defer close(cla.done)
				c.work(cla, cl)
			}()
		}
	}
	c.j.log.Debug("journal partitions assigned", "group", c.group, "partitions", assigned)
}

// revoked ends the claims on the partitions taken away and waits until their goroutines have
// stopped, so that no commit for them follows the revocation. It resumes their fetching, since
// franz-go keeps a pause across rebalances.
func (c *consumer) revoked(_ context.Context, cl *kgo.Client, lost map[string][]int32) {
	var ended []*claim
	c.mu.Lock()
	for topic, ps := range lost {
		for _, p := range ps {
			tp := topicPartition{topic, p}
			if cla := c.claims[tp]; cla != nil {
				cla.mu.Lock()
				cla.ended = true
				cla.mu.Unlock()
				cla.cancel()
				delete(c.claims, tp)
				ended = append(ended, cla)
			}
		}
	}
	c.mu.Unlock()
	for _, cla := range ended {
		<-cla.done
	}
	if len(lost) > 0 {
		cl.ResumeFetchPartitions(lost)
	}
	if len(ended) > 0 {
		c.j.log.Debug("journal partitions revoked", "group", c.group, "partitions", lost)
	}
}

// dispatch hands polled records to their partition's goroutine, or drops them if the partition
// was revoked since (its next owner reads them from the last commit).
func (c *consumer) dispatch(cl *kgo.Client, p kgo.FetchTopicPartition) {
	tp := topicPartition{p.Topic, p.Partition}
	c.mu.Lock()
	cla := c.claims[tp]
	c.mu.Unlock()
	if cla == nil {
		return
	}
	cla.mu.Lock()
	defer cla.mu.Unlock()
	if cla.ended {
		return
	}
	cla.pending = append(cla.pending, p)
	if len(cla.pending) >= pauseAt && !cla.paused {
		cl.PauseFetchPartitions(map[string][]int32{tp.topic: {tp.partition}})
		cla.paused = true
	}
	select {
	case cla.wake <- struct{}{}:
	default:
	}
}

// work handles a partition's records, batch after batch, committing each, until the claim ends.
func (c *consumer) work(cla *claim, cl *kgo.Client) {
	for {
		cla.mu.Lock()
		if len(cla.pending) == 0 {
			if cla.paused && !cla.ended {
				cl.ResumeFetchPartitions(map[string][]int32{cla.tp.topic: {cla.tp.partition}})
				cla.paused = false
			}
			cla.mu.Unlock()
			select {
			case <-cla.wake:
				continue
			case <-cla.ctx.Done():
				return
			}
		}
		p := cla.pending[0]
		cla.pending = cla.pending[1:]
		cla.mu.Unlock()
		for recs := range slices.Chunk(p.Records, c.j.cfg.MaxBatch) {
			if c.processBatch(cla, cl, p, recs) != nil {
				return // the claim ended
			}
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
