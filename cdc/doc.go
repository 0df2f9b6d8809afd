// Package cdc carries changes to the converge engine (shadow.Engine) from the durable sources:
// the journal of changed keys on Kafka (JournalWorker, journal.go) and the stores' change
// streams.
//
// # Change streams
//
// A Source (source.go) is a stream of changed keys with resumable positions; ChangeStream
// (changestream.go) is a MongoDB collection's change stream, projected so that no event carries
// the document, and DynamoStream (dynamostream.go) a DynamoDB table's stream, the reverse
// path's source when the new store is a table. A Tailer (tailer.go) follows one Source in one direction: a reader fills a
// bounded queue, one applier converges each batch (ConvergeBatch) and then saves the position
// in the catalog; whichever side fails first stops the other. Drop, rename and invalidate
// (ErrInvalidated), a position the server no longer holds (ErrHistoryLost) and an event without a
// usable key (ErrBadEvent) stop the path in a state kept in the catalog, with the way out. A
// forward tailer applies the backfill interplay rule (interplay.go) from the catalog's backfill
// leases; with a Publisher (publish.go) it hands the keys to the journal instead of converging
// them, and saves the position once the journal acknowledged them. docs/cdc.md is the overview.
//
// # The journal worker
//
// The proxy journals a key when its in-process converge queue is full, when a converge failed
// (the new store down), or when a write named no keys (an updateMany by another field).
// A JournalWorker consumes that journal as a member of a Kafka consumer group (default
// "tandem-converge"): each partition is read by one worker of the group, in order, and since
// the proxy keys records by migration and key, every key is converged by one worker at a time.
//
// For each batch (the entries of one partition, in offset order) the worker groups the
// entries by migration and calls ConvergeBatch(keys, shadow.Forward) on that migration's
// engine:
//
//   - A converge error (a store unreachable) fails the batch: nothing is committed and the
//     journal hands the same batch over again, with exponential backoff, until it converges.
//     The keys wait in Kafka until the new store is back; nothing is dropped.
//   - A document that cannot be transformed or written is dead-lettered by the engine and
//     counts as done.
//   - Entries of a migration the EngineResolver does not know (ErrUnknownMigration) are
//     logged, counted (tandem_journal_worker_keys_total{result="skipped_unknown_migration"})
//     and skipped: committed past, never converged by this worker.
//   - Unkeyed entries (a filter instead of a key) are resolved by FilterKeys, best effort: it
//     reads the keys of the old store's documents that match the filter now, and those are
//     converged. Documents the write moved out of the filter's reach, and any delete by filter
//     (the documents are gone, so nothing matches), cannot be found this way: the change-stream
//     path converges those, and the verifier finds whatever is left. Without FilterKeys, or
//     when it returns ErrUnresolvable, the entry is logged, counted as skipped_unkeyed and
//     skipped.
//
// Delivery is at least once: after a crash or a rebalance a batch may be converged again,
// which converge's idempotence makes harmless.
//
// # Lag
//
// Every LagEvery (default 5s) the worker reports, per migration, how far it is behind, to the
// LagReporter (the catalog, component "journal-forward") and as the gauge
// tandem_journal_worker_lag_seconds: now minus the time (JournalEntry.At, the proxy's clock)
// of the newest entry it converged when more records were waiting in that partition, or of the
// oldest entry of a batch still being retried; 0 when it has caught up. Only migrations whose
// engine was found are reported; those listed in JournalWorkerConfig.Migrations are reported
// even before the journal holds anything for them (with the worst lag of any partition), so an
// idle migration shows a fresh 0 rather than no record. The lag in records of
// the whole group is adapters.KafkaJournal.Lag.
package cdc
