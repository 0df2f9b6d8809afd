package cdc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tandemdb/tandem/adapters"
)

// ReasonChangeStream is the JournalEntry.Reason of keys a tailer published.
const ReasonChangeStream = "change_stream"

// Appender is what a Publisher needs of the journal: *adapters.KafkaJournal.
type Appender interface {
	Append(ctx context.Context, entries ...adapters.JournalEntry) error
}

var _ Appender = (*adapters.KafkaJournal)(nil)

// Publisher is the forward tailer's alternative to converging the keys itself: it appends each
// batch's keys to the journal, whose consumer group (JournalWorker, group tandem-converge)
// converges them across worker processes, one partition per worker. Only the forward path can
// go this way: a JournalWorker converges old → new.
//
// Publish returns once the brokers have acknowledged every entry (the journal's producer waits
// for all in-sync replicas), so the tailer may then save the batch's position: a key is either
// in the journal or still ahead of the checkpoint. A crash in between publishes the batch
// again, which converge's idempotence makes harmless.
type Publisher struct {
	journal   Appender
	migration string
	namespace string
}

// maxPublish bounds the entries of one Append.
const maxPublish = 500

// NewPublisher returns a Publisher of migration's keys; namespace ("db.collection") is the
// followed collection, recorded with each entry.
func NewPublisher(journal Appender, migration, namespace string) (*Publisher, error) {
	switch {
	case journal == nil:
		return nil, errors.New("cdc: publisher: a journal is required")
	case migration == "":
		return nil, errors.New("cdc: publisher: a migration is required")
	case namespace == "":
		return nil, fmt.Errorf("cdc: publisher of %s: a namespace is required", migration)
	}
	return &Publisher{journal: journal, migration: migration, namespace: namespace}, nil
}

// Publish journals the keys of b's changes, in order. A change without a key is refused (a
// source must not deliver one): nothing of b is published then.
func (p *Publisher) Publish(ctx context.Context, b Batch) error {
	entries := make([]adapters.JournalEntry, 0, len(b.Changes))
	now := time.Now()
	for i, c := range b.Changes {
		if c.Key == nil {
			return fmt.Errorf("cdc: publishing a batch of %s: change %d of %d (%s) has no key", p.migration, i+1, len(b.Changes), c.Op)
		}
		at := c.At
		if at.IsZero() {
			at = now
		}
		entries = append(entries, adapters.JournalEntry{
			Migration: p.migration, Key: c.Key, Namespace: p.namespace, Op: journalOp(c.Op),
			Reason: ReasonChangeStream, At: at,
		})
	}
	for chunk := range slices.Chunk(entries, maxPublish) {
		if err := p.journal.Append(ctx, chunk...); err != nil {
			return fmt.Errorf("cdc: publishing %d keys of %s: %w", len(chunk), p.migration, err)
		}
	}
	return nil
}

// journalOp names a change's operation as the journal names write commands.
func journalOp(op Op) string {
	switch op {
	case OpInsert:
		return "insert"
	case OpDelete:
		return "delete"
	default: // update, replace
		return "update"
	}
}
