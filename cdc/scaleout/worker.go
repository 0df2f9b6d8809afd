// Package scaleout runs the converge paths of package cdc as separate processes, for the tests
// and the benchmark that need more than one: journal workers of one consumer group
// (tandem-converge) on a real Kafka broker, and contenders for a leader lease that get
// SIGKILLed. It is support code for tests and benchmarks; the product runs the same parts
// through package migration.
package scaleout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/cdc"
	"github.com/tandemdb/tandem/shadow"
	"github.com/tandemdb/tandem/transform"
)

// Migration is the migration the workers converge: DB.users → DB.users_v2.
const Migration = "users-scaleout"

// specTemplate is Migration's spec; %s is the database.
const specTemplate = `name: users-scaleout
source:
  mongodb: {uri: "mongodb://unused/", database: %[1]s, collection: users}
target:
  mongodb: {uri: "mongodb://unused/", database: %[1]s, collection: users_v2}
forward:
  - rename: {from: name, to: profile.name}
  - convert: {path: age, from: int32, to: int64, on_error: fail}
  - set: {path: v, value: 2}
reverse:
  - drop: {path: v}
  - convert: {path: age, from: int64, to: int32, on_error: keep}
  - rename: {from: profile.name, to: name}
`

// Spec parses Migration's spec for database db.
func Spec(db string) (*transform.Spec, error) {
	return transform.Parse("users-scaleout.yaml", fmt.Appendf(nil, specTemplate, db))
}

// Stores returns the old and new store of database db.
func Stores(client *mongo.Client, db string) (old, new *adapters.MongoStore) {
	d := client.Database(db)
	return adapters.NewMongoStore(d.Collection("users")), adapters.NewMongoStore(d.Collection("users_v2"))
}

// HandledCollection holds, when WorkerConfig.Record is set, one document per batch a worker
// converged: {worker, keys, partitions, at}.
const HandledCollection = "handled"

// WorkerConfig is one journal worker process.
type WorkerConfig struct {
	// MongoURI is the MongoDB (FerretDB) of the stores. Required.
	MongoURI string
	// DB is the database of the stores and of HandledCollection; the catalog (dead letters,
	// lags) is DB_meta. Required.
	DB string
	// Brokers and Topic are the journal's. Required.
	Brokers []string
	Topic   string
	// Name is the worker's Kafka client id, and its name in HandledCollection. Required.
	Name string
	// Group is the consumer group. Optional; default cdc.DefaultJournalGroup.
	Group string
	// Record makes the worker record the keys of every batch it converged.
	Record bool
	// MaxBatch is the most journal entries of one batch. Optional; default the journal's (500).
	MaxBatch int
	// Logger is the logger. Optional; default: discard.
	Logger *slog.Logger
}

// SessionTimeout is the workers' Kafka session timeout: how long the group waits for a member
// that stopped sending heartbeats (a killed process) before it moves its partitions; the
// broker's smallest allowed (group.min.session.timeout.ms, 6s by default).
const SessionTimeout = 6 * time.Second

// RunWorker runs a journal worker of Migration until ctx ends.
func RunWorker(ctx context.Context, cfg WorkerConfig) error {
	if cfg.MongoURI == "" || cfg.DB == "" || len(cfg.Brokers) == 0 || cfg.Topic == "" || cfg.Name == "" {
		return errors.New("scaleout: worker: MongoURI, DB, Brokers, Topic and Name are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	client, err := mongo.Connect(options.Client().ApplyURI(cfg.MongoURI))
	if err != nil {
		return fmt.Errorf("scaleout: worker %s: connecting to %s: %w", cfg.Name, cfg.MongoURI, err)
	}
	defer func() { _ = client.Disconnect(context.Background()) }()
	spec, err := Spec(cfg.DB)
	if err != nil {
		return err
	}
	cat, err := catalog.Open(ctx, client, catalog.WithDatabase(cfg.DB+"_meta"))
	if err != nil {
		return fmt.Errorf("scaleout: worker %s: %w", cfg.Name, err)
	}
	old, new := Stores(client, cfg.DB)
	engine, err := shadow.NewEngine(shadow.Config{
		Migration: Migration, SpecVersion: spec.Version, Old: old, New: new,
		Forward: spec.Forward, Reverse: spec.Reverse, DeadLetters: cat, Log: cfg.Logger,
	})
	if err != nil {
		return err
	}
	kj, err := adapters.NewKafkaJournal(adapters.KafkaJournalConfig{
		Brokers: cfg.Brokers, Topic: cfg.Topic, ClientID: cfg.Name, Logger: cfg.Logger,
		Options: []kgo.Opt{kgo.SessionTimeout(SessionTimeout), kgo.HeartbeatInterval(500 * time.Millisecond),
			kgo.FetchMaxWait(200 * time.Millisecond), kgo.MetadataMinAge(250 * time.Millisecond)},
		RetryMin: 10 * time.Millisecond, RetryMax: 500 * time.Millisecond, MaxBatch: cfg.MaxBatch,
	})
	if err != nil {
		return err
	}
	defer kj.Close()
	var journal cdc.Journal = kj
	if cfg.Record {
		journal = recording{Journal: kj, coll: client.Database(cfg.DB).Collection(HandledCollection), name: cfg.Name}
	}
	w, err := cdc.NewJournalWorker(cdc.JournalWorkerConfig{
		Journal: journal, Group: cfg.Group, Engines: cdc.EngineMap(map[string]*shadow.Engine{Migration: engine}),
		Logger: cfg.Logger, Migrations: []string{Migration}, LagReporter: cat,
	})
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// Handled is one document of HandledCollection.
type Handled struct {
	Worker     string    `bson:"worker"`
	Keys       []string  `bson:"keys"`
	Partitions []int32   `bson:"partitions"` // the journal partitions the keys were read from
	At         time.Time `bson:"at"`
}

// recording is a journal whose handler records, after each batch converged and before its
// offsets are committed, which worker converged which keys.
type recording struct {
	cdc.Journal
	coll *mongo.Collection
	name string
}

func (r recording) Consume(ctx context.Context, group string, handle func(ctx context.Context, batch []adapters.JournalEntry) error) error {
	return r.Journal.Consume(ctx, group, func(ctx context.Context, batch []adapters.JournalEntry) error {
		if err := handle(ctx, batch); err != nil {
			return err
		}
		h := Handled{Worker: r.name, Keys: make([]string, 0, len(batch)), At: time.Now().UTC()}
		for _, e := range batch {
			if e.Key != nil {
				h.Keys = append(h.Keys, fmt.Sprint(e.Key))
			}
			if !slices.Contains(h.Partitions, e.Position.Partition) {
				h.Partitions = append(h.Partitions, e.Position.Partition)
			}
		}
		_, err := r.coll.InsertOne(ctx, h)
		if err != nil {
			return fmt.Errorf("recording a converged batch of %d keys: %w", len(h.Keys), err)
		}
		return nil
	})
}

// Doc is the old store's document with key id: a name and an age, as the spec expects.
func Doc(id string, age int32) bson.D {
	return bson.D{{Key: "_id", Value: id}, {Key: "name", Value: "user " + id}, {Key: "age", Value: age}}
}

// Entry is the journal entry of a key of Migration.
func Entry(id string) adapters.JournalEntry {
	return adapters.JournalEntry{Migration: Migration, Key: id, Namespace: "users", Op: "update", Reason: "converge_failed", At: time.Now()}
}
