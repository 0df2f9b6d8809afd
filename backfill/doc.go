// Package backfill copies the history of a migration: every document of the source (the old
// store, MongoDB) transformed into the target (the new store, MongoDB or DynamoDB), in
// partitions that several processes share, throttled, resumable after any crash, and safe to
// run while the application writes.
//
// # Use
//
//	b, err := backfill.New(backfill.Config{Migration: "users-v2", Spec: spec, Old: old, New: new,
//		Catalog: cat, Reconverge: func(ctx context.Context, k adapters.Key) error {
//			_, err := engine.Converge(ctx, k, shadow.Forward) // a dead letter is no error
//			return err
//		}})
//	err = b.Run(ctx) // until every partition is done, by any process; b.Summary() after
//
// Plan is the dry run (counts, the partition plan, a transformed sample; writes nothing),
// Prepare creates the target and stores the plan without copying, Status reads the progress
// any process can show, and Pause, Resume, SetRate and SetBytesRate change the control state
// that every running process obeys within one poll (at most a second), each change audited.
//
// # Plan
//
// The first process to run stores a plan in the catalog; every other process, and every
// restart, follows that plan. A MongoDB range query matches keys of its bound's BSON type class
// only ({_id: {$gte: 5}} never returns "a"), so a plan of ranges over one class would skip the
// others silently. The plan counts the keys of each class ($type: number, string, object,
// binData, objectId, bool, date, timestamp, regex; int32, int64 and double are one class, as
// MongoDB compares them by value), gives each class a share of the partitions in proportion,
// and splits it at keys found by sorted skips ($sample with SampledPartitions, falling back to
// skips where the server lacks it, as FerretDB does). Every range's lower bound is a key of its
// class, so each range reads one class and the ranges of a class cover all its keys. Keys
// written after the plan was made, in a class or below a class's first key, are not in it:
// they are written live, and the live paths (the proxy's converge, the journal) converge them.
// Start the backfill after those paths run (phase shadow), so that every write is either in the
// plan's snapshot or converged on its own. A DynamoDB source would get parallel scan segments.
//
// The target is created when absent: a MongoDB collection with the spec's `indexes:`, or an
// on-demand DynamoDB table whose key type follows the source's most common key class. A target
// that holds documents when the plan is made is refused (ErrTargetNotEmpty) unless
// AllowExisting: the backfill cannot tell its own documents from others, so the check is made
// once, before the first write. Call Prepare before the proxy's converges start writing to
// the target, or pass AllowExisting when they have.
//
// # Leases
//
// Partitions are tasks that workers claim (migration-verifier's task model). A claim is an
// insert, because FerretDB's conditional updates and $inc are not atomic between concurrent
// writers while its unique _id is: partition p's lease of generation g is the record
// "MIGRATION/PLAN/p/g". A worker claims a partition nobody holds by inserting generation 1, and
// one whose newest lease has expired (its holder crashed, hung, or lost the catalog) by
// inserting generation g+1; of racing claimers exactly one insert succeeds. After the insert
// only the owner writes its record: renewals every Lease/3, checkpoints, the done mark. A
// partition's state is its newest generation's record, and the claimer of g+1 starts from g's
// checkpoint and counters as it read them. So a stale owner of g, still running after the
// takeover, can only write to g's record, which nobody reads any longer: it never moves the
// partition backwards or forwards. It notices the takeover at its next renewal or fence check
// (before each checkpoint: does g+1 exist?) and stops; a stale checkpoint is harmless and
// re-copying from an older one only repeats idempotent upserts. A worker also stops writing
// while its lease has expired by its own clock (the catalog away): not for correctness, which
// the rule below keeps, but so that two processes seldom copy one partition at once. Clocks
// of the processes must agree to well within the lease (default 30s).
//
// # Batches and checkpoints
//
// Each batch: read up to Batch documents after the checkpoint; transform (Spec.Forward) and
// normalize (the target's Normalize, and MongoDB's 16 MiB limit checked here) each one,
// dead-lettering any that fail with the step and the reason (key and size for a document over
// the limit: 16 MiB of BSON for MongoDB, 400 KB for a DynamoDB item); save the batch's keys in
// the lease (Pending); write them in chunks of Chunk documents, each after the throttle;
// re-check them (below); save the checkpoint (the batch's last key) with the
// partition's counters in the same record, so the counts are exactly those of the batches up
// to the checkpoint. A restart, here or anywhere, resumes after the checkpoint: nothing is
// missed, and a batch written again is written as it is then, which changes nothing.
//
// A chunk is written as upserts, except that a target which can insert (adapters.Inserter: a
// MongoDB collection keyed by _id) first gets it as an unordered insertMany, and then upserts
// of the keys it already held (the duplicates). Either way every document of the chunk ends as the batch read
// it, so the re-check and the checkpoint do not tell them apart; the inserts only spare the
// upserts' look-up of each key (on FerretDB a read of the whole target). Once most keys of a
// chunk were there (a batch copied again after a restart, a target filled before with
// AllowExisting), the rest of the batch is upserted directly.
//
// # Live writes: the re-check rule
//
// A write that reaches a key after the backfill read it and before the batch landed would be
// overwritten by the older copy. The rule: after a batch lands, read its keys again from the
// source (one range query over [first, last] of the batch, as $in is a full scan on FerretDB)
// and converge (Config.Reconverge, which reads the latest state) every key whose source
// document differs from what the batch copied, or is gone. Any write after that re-read is
// converged by its own path after it happened, so after the batch landed, and wins. It needs
// no coordination between processes: the proxy, the journal worker and any number of
// backfill processes may run anywhere.
//
// A crash between the write and the re-check would leave the older copy, and a deleted
// document would even come back with nothing to remove it (the re-scan no longer sees it).
// That is what Pending is for: the next owner of the partition first converges every key the
// interrupted batch announced. The one case left is a stale owner whose lease was taken over,
// whose delayed write lands after the new owner passed the range, and which then crashes
// before its re-check; verification and repair (package verify) are the safety net for it.
//
// The alternatives weighed: recording in the catalog every key the proxy writes while a batch
// is in flight, for the backfill to skip or re-converge, costs a catalog write per application
// write and a protocol between the proxy and the backfill that must hold across processes on a
// catalog without atomic updates; ordering by change-stream positions (Vitess' copy phase)
// needs change streams, which FerretDB lacks and the journal does not order; version fields in
// the target documents would change the target schema; DBLog's watermarks are patented. The
// re-check costs one extra range read per batch and a converge per key that changed in the
// batch's window.
//
// # Throttle and control
//
// One decision per process, which every worker waits on before each chunk (gh-ost's
// throttler): the control state polled from the catalog every Poll (paused; the rates in
// documents/s and bytes/s for the whole backfill, shared equally among the processes copying),
// and an adaptive limit fed by the writes: a chunk that fails, a DynamoDB throttling error
// (ProvisionedThroughputExceededException, ThrottlingException, items left unprocessed) or a
// write slower than MaxLatency halves the limit below the throughput achieved; it recovers by
// 10% a second. A pause or resume wakes the waiters at once; a new rate applies from the next
// fifth of a second's worth of tokens they take. The catalog unreachable, the
// last decision holds, checkpoints and dead letters wait for it, and the copy resumes when it
// answers; nothing is lost.
//
// # Progress
//
// Status sums the partitions' counters (copied, bytes, dead letters, keys re-converged, errors
// retried) and the processes' reports (documents/s, bytes/s) into a Progress with an ETA.
// Metrics are Prometheus collectors the caller registers. A document dead-lettered is never
// dropped: it is in the catalog's dead letters (direction forward, step "backfill …") until a
// converge of its key succeeds, typically after the spec is fixed.
package backfill
