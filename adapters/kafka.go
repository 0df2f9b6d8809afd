package adapters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
)

// JournalFormatVersion is the version of the journal record format this build writes, and the
// only one it reads. A record's value is the BSON document {v: <version>, entry: <JournalEntry>};
// a consumer meeting another version reports the record as bad rather than guessing.
const JournalFormatVersion = 1

// DefaultJournalTopic is the topic of the journal when KafkaJournalConfig.Topic is empty.
const DefaultJournalTopic = "tandem.journal"

// Sentinel errors of the journal.
var (
	// ErrInvalidEntry means Append was given an entry it cannot journal (no migration, neither a
	// key nor a filter, …); nothing of that call was produced.
	ErrInvalidEntry = errors.New("invalid journal entry")
	// ErrBadRecord means a record of the journal topic could not be decoded into an entry: not
	// BSON, another format version, or an entry that fails the checks Append makes.
	ErrBadRecord = errors.New("bad journal record")
)

// KafkaJournalConfig configures a KafkaJournal.
type KafkaJournalConfig struct {
	// Brokers are the seed brokers, "host:port" each. Required.
	Brokers []string
	// Topic is the journal's topic. Optional; default DefaultJournalTopic ("tandem.journal").
	Topic string
	// ClientID names the Kafka clients in broker logs and quotas. Optional; default "tandem".
	ClientID string
	// Options are extra franz-go options (TLS, SASL, timeouts, …) for every client the journal
	// makes. Optional. The journal's own options (brokers, topic, group, commit mode) are applied
	// after them and win.
	Options []kgo.Opt
	// Logger receives the journal's logs and franz-go's warnings. Optional; default slog.Default().
	Logger *slog.Logger
	// Metrics receives counts. Optional; default: unregistered collectors.
	Metrics *JournalMetrics
	// OnBadRecord is called by Consume, before the offset is committed past it, with every
	// record that cannot be decoded (the record is also logged and counted). A non-nil error is
	// retried with backoff like a handler error, so a record is never committed past before it
	// reached OnBadRecord. Optional; default: log and count only.
	OnBadRecord func(ctx context.Context, r BadRecord) error
	// RetryMin and RetryMax bound Consume's exponential backoff between attempts of a failed
	// batch. Optional; defaults 100ms and 5s.
	RetryMin, RetryMax time.Duration
	// MaxBatch is the most entries Consume hands to one handle call. Optional; default 500.
	MaxBatch int
}

// BadRecord is a journal record Consume could not decode.
type BadRecord struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	// Err says what is wrong; it wraps ErrBadRecord.
	Err error
}

// KafkaJournal is the journal of changed keys on a Kafka topic. Entries are keyed by migration
// and canonical key (KeyString), so one key always lands in one partition and is read, in
// order, by one consumer of a group. It is safe for concurrent use.
type KafkaJournal struct {
	cfg      KafkaJournalConfig
	log      *slog.Logger
	m        *JournalMetrics
	producer *kgo.Client
}

// NewKafkaJournal checks cfg and returns a journal. It does not connect: the first Append,
// EnsureTopic, Lag or Consume does.
func NewKafkaJournal(cfg KafkaJournalConfig) (*KafkaJournal, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Topic == "" {
		cfg.Topic = DefaultJournalTopic
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "tandem"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewJournalMetrics(nil)
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 5 * time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = cfg.RetryMin
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 500
	}
	j := &KafkaJournal{cfg: cfg, log: cfg.Logger, m: cfg.Metrics}
	// franz-go's producer is idempotent by default (acks from all in-sync replicas, retried
	// without duplicates or reordering within a partition); the default partitioner hashes the
	// record key (murmur2, as the Java client), so a key keeps its partition while the topic's
	// partition count does not change.
	p, err := kgo.NewClient(j.opts(kgo.DefaultProduceTopic(cfg.Topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))...)
	if err != nil {
		return nil, fmt.Errorf("kafka journal: creating producer: %w", err)
	}
	j.producer = p
	return j, nil
}

func (c KafkaJournalConfig) check() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka journal: KafkaJournalConfig.Brokers is required")
	}
	for _, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			return fmt.Errorf("kafka journal: broker %q is not host:port", b)
		}
	}
	if c.Topic != "" {
		if err := checkTopicName(c.Topic); err != nil {
			return err
		}
	}
	switch {
	case c.RetryMin < 0 || c.RetryMax < 0:
		return fmt.Errorf("kafka journal: negative retry backoff (%s, %s)", c.RetryMin, c.RetryMax)
	case c.MaxBatch < 0:
		return fmt.Errorf("kafka journal: negative MaxBatch %d", c.MaxBatch)
	}
	return nil
}

// checkTopicName applies Kafka's rule for topic names: 1 to 249 of [a-zA-Z0-9._-], not "." or "..".
func checkTopicName(t string) error {
	if t == "." || t == ".." || len(t) > 249 || strings.IndexFunc(t, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) >= 0 {
		return fmt.Errorf("kafka journal: %q is not a valid topic name (1-249 of a-z A-Z 0-9 . _ -)", t)
	}
	return nil
}

// opts returns the options of a client of this journal: the caller's first, then ours.
func (j *KafkaJournal) opts(extra ...kgo.Opt) []kgo.Opt {
	o := slices.Clone(j.cfg.Options)
	o = append(o, kgo.SeedBrokers(j.cfg.Brokers...), kgo.ClientID(j.cfg.ClientID), kgo.WithLogger(kgoLogger{j.log}))
	return append(o, extra...)
}

// Topic returns the journal's topic.
func (j *KafkaJournal) Topic() string { return j.cfg.Topic }

// Append produces entries and waits until Kafka has acknowledged each of them (or ctx ends:
// give it a deadline, as franz-go retries a broker that is down until then). An entry's At is
// set to the current time when zero. Entries are checked first and nothing is produced if one
// is invalid (ErrInvalidEntry). The error names every entry that was not acknowledged; the
// others were journaled.
func (j *KafkaJournal) Append(ctx context.Context, entries ...JournalEntry) error {
	if len(entries) == 0 {
		return nil
	}
	recs := make([]*kgo.Record, len(entries))
	index := make(map[*kgo.Record]int, len(entries))
	now := time.Now()
	for i, e := range entries {
		if e.At.IsZero() {
			e.At = now
		}
		r, err := encodeEntry(e)
		if err != nil {
			return fmt.Errorf("journal append: entry %d of %d (%s): %w", i+1, len(entries), describeEntry(e), err)
		}
		recs[i], index[r] = r, i
	}
	var errs []error
	for _, res := range j.producer.ProduceSync(ctx, recs...) {
		i := index[res.Record]
		if res.Err != nil {
			j.m.appendFailures.Inc()
			errs = append(errs, fmt.Errorf("entry %d (%s): %w", i+1, describeEntry(entries[i]), res.Err))
			continue
		}
		j.m.appended.WithLabelValues(entries[i].Reason).Inc()
	}
	if len(errs) > 0 {
		return fmt.Errorf("journal append to topic %s: %d of %d entries not acknowledged: %w", j.cfg.Topic, len(errs), len(entries), errors.Join(errs...))
	}
	return nil
}

// journalEnvelope is the value of every journal record.
type journalEnvelope struct {
	V     int32        `bson:"v"`
	Entry JournalEntry `bson:"entry"`
}

// recordKey is the Kafka record key of an entry: "<migration>\x00<KeyString(key)>", or for an
// unkeyed entry "<migration>\x00ns:<namespace>" (a KeyString never starts with "ns:").
func recordKey(e JournalEntry) []byte {
	if e.Key == nil {
		return []byte(e.Migration + "\x00ns:" + e.Namespace)
	}
	return []byte(e.Migration + "\x00" + KeyString(e.Key))
}

func encodeEntry(e JournalEntry) (*kgo.Record, error) {
	if err := checkEntry(e); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEntry, err)
	}
	v, err := bson.Marshal(journalEnvelope{V: JournalFormatVersion, Entry: e})
	if err != nil {
		return nil, fmt.Errorf("%w: encoding BSON: %w", ErrInvalidEntry, err)
	}
	return &kgo.Record{Key: recordKey(e), Value: v}, nil
}

// checkEntry is what an entry must satisfy, both to be appended and to be consumed.
func checkEntry(e JournalEntry) error {
	switch {
	case e.Migration == "":
		return errors.New("no migration")
	case e.Key == nil && e.Namespace == "":
		return errors.New("an unkeyed entry needs a namespace")
	case e.At.IsZero():
		return errors.New("no time")
	}
	if e.Filter != nil {
		if err := e.Filter.Validate(); err != nil {
			return fmt.Errorf("filter is not a BSON document: %w", err)
		}
	}
	return nil
}

// decodeEntry decodes a record's value; errors wrap ErrBadRecord.
func decodeEntry(value []byte) (JournalEntry, error) {
	raw := bson.Raw(value)
	if err := raw.Validate(); err != nil {
		return JournalEntry{}, fmt.Errorf("%w: value is not a BSON document: %w", ErrBadRecord, err)
	}
	v, ok := raw.Lookup("v").AsInt64OK()
	if !ok {
		return JournalEntry{}, fmt.Errorf("%w: no format version (field v)", ErrBadRecord)
	}
	if v != JournalFormatVersion {
		return JournalEntry{}, fmt.Errorf("%w: format version %d, this build reads %d", ErrBadRecord, v, JournalFormatVersion)
	}
	var env journalEnvelope
	if err := bson.Unmarshal(value, &env); err != nil {
		return JournalEntry{}, fmt.Errorf("%w: decoding entry: %w", ErrBadRecord, err)
	}
	if err := checkEntry(env.Entry); err != nil {
		return JournalEntry{}, fmt.Errorf("%w: %w", ErrBadRecord, err)
	}
	return env.Entry, nil
}

func describeEntry(e JournalEntry) string {
	if e.Key == nil {
		return fmt.Sprintf("migration %q, unkeyed %s on %s, filter_hash %s", e.Migration, e.Op, e.Namespace, FilterHash(e.Filter))
	}
	return fmt.Sprintf("migration %q, key %s", e.Migration, KeyString(e.Key))
}

// EnsureTopic creates the journal's topic with partitions and replication factor (-1 for either
// takes the broker's default). A topic that exists already is left as it is and is not an
// error; a partition count other than the one asked for is logged, since changing it moves keys
// to other partitions.
func (j *KafkaJournal) EnsureTopic(ctx context.Context, partitions int32, replication int16) error {
	if partitions == 0 || partitions < -1 || replication == 0 || replication < -1 {
		return fmt.Errorf("kafka journal: topic %s: partitions (%d) and replication (%d) must be positive or -1", j.cfg.Topic, partitions, replication)
	}
	adm := kadm.NewClient(j.producer)
	resp, err := adm.CreateTopic(ctx, partitions, replication, nil, j.cfg.Topic)
	if err == nil {
		err = resp.Err
	}
	if err == nil {
		j.log.Info("journal topic created", "topic", j.cfg.Topic, "partitions", partitions, "replication", replication)
		return nil
	}
	if !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("kafka journal: creating topic %s: %w", j.cfg.Topic, err)
	}
	if partitions > 0 {
		details, derr := adm.ListTopics(ctx, j.cfg.Topic)
		if derr == nil {
			if td, ok := details[j.cfg.Topic]; ok && td.Err == nil && int32(len(td.Partitions)) != partitions {
				j.log.Warn("journal topic exists with another partition count", "topic", j.cfg.Topic, "partitions", len(td.Partitions), "asked", partitions)
			}
		}
	}
	return nil
}

// Lag returns how many records of the journal's topic the consumer group has not committed yet:
// for each partition, its end offset minus the group's committed offset (or the partition's
// start offset where the group has committed nothing, or less than what retention kept). It
// counts records, not time: a worker's lag in time is reported by cdc.JournalWorker.
func (j *KafkaJournal) Lag(ctx context.Context, group string) (int64, error) {
	if group == "" {
		return 0, errors.New("kafka journal: lag: no group")
	}
	adm := kadm.NewClient(j.producer)
	ends, err := adm.ListEndOffsets(ctx, j.cfg.Topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("kafka journal: lag of group %s: end offsets of %s: %w", group, j.cfg.Topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, j.cfg.Topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("kafka journal: lag of group %s: start offsets of %s: %w", group, j.cfg.Topic, err)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) { // a group that never committed (some brokers say so)
		committed, err = nil, nil
	}
	if err != nil {
		return 0, fmt.Errorf("kafka journal: lag of group %s: committed offsets: %w", group, err)
	}
	if len(ends) == 0 {
		return 0, fmt.Errorf("kafka journal: lag of group %s: topic %s: %w", group, j.cfg.Topic, kerr.UnknownTopicOrPartition)
	}
	var lag int64
	ends.Each(func(end kadm.ListedOffset) {
		from := int64(0)
		if s, ok := starts.Lookup(end.Topic, end.Partition); ok {
			from = s.Offset
		}
		if c, ok := committed.Lookup(end.Topic, end.Partition); ok && c.At > from {
			from = c.At
		}
		lag += max(end.Offset-from, 0)
	})
	return lag, nil
}

// Close closes the journal's producer; entries not yet acknowledged fail. Consume calls have
// clients of their own, closed when they return.
func (j *KafkaJournal) Close() { j.producer.Close() }

// JournalMetrics are the journal's collectors, registered by the caller.
type JournalMetrics struct {
	appended       *prometheus.CounterVec
	appendFailures prometheus.Counter
	consumed       prometheus.Counter
	retries        *prometheus.CounterVec
	badRecords     prometheus.Counter
	fetchErrors    prometheus.Counter
}

// NewJournalMetrics creates the collectors and registers them with reg (nil: unregistered).
func NewJournalMetrics(reg prometheus.Registerer) *JournalMetrics {
	m := &JournalMetrics{
		appended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_journal_appended_total",
			Help: "Journal entries acknowledged by Kafka, by reason (queue_full, converge_failed, unkeyed_write).",
		}, []string{"reason"}),
		appendFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_journal_append_failures_total",
			Help: "Journal entries Kafka did not acknowledge (Append returned an error naming them).",
		}),
		consumed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_journal_consumed_total",
			Help: "Journal records handled and committed by consumers (bad records included).",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_journal_retries_total",
			Help: "Failed attempts a consumer retries with backoff, by stage (handle, bad_record, commit).",
		}, []string{"stage"}),
		badRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_journal_bad_records_total",
			Help: "Journal records that could not be decoded; reported, then committed past.",
		}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tandem_journal_fetch_errors_total",
			Help: "Errors franz-go reported while fetching the journal (it retries them itself).",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.appended, m.appendFailures, m.consumed, m.retries, m.badRecords, m.fetchErrors)
	}
	return m
}

// kgoLogger passes franz-go's warnings and errors to slog.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if level == kgo.LogLevelError {
		k.l.Error("kafka: "+msg, keyvals...)
		return
	}
	k.l.Warn("kafka: "+msg, keyvals...)
}
