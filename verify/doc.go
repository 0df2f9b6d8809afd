// Package verify checks a whole migration: that the new store holds the forward transform of
// every document of the old store, and nothing else, that the new documents keep the spec's
// invariants, and that the new store has the indexes the spec requires. docs/verify.md
// describes it in full.
//
// # Runs, generations, tasks
//
// A run lives in the catalog (catalog.VerifyRun), so that it survives a crash and several
// processes share it: generation 0 is the full pass, split into tasks (key ranges of both
// stores merged in key order for MongoDB → MongoDB by _id, otherwise partitions of each
// store compared by batched look-ups); each later generation rechecks the keys that differed
// or changed (Config.Changes) during the one before, until nothing is left. Workers claim
// tasks under leases by inserting a lease record per attempt (the backfill's scheme) and save
// a checkpoint after every batch; a task taken over resumes after it.
//
// A difference is pending when first seen and confirmed only when a recheck in a later
// generation, at least Config.Settle after it was first seen, still sees it (reading old,
// new, then old again); one that is gone is resolved. A write racing the scan is therefore
// pending and then resolved, never a mismatch.
//
// Run verifies once (tandem verify) and saves a catalog.VerifySummary; Continuous is the
// runtime's verify path: full pass, rechecks of changed keys, a rolling sample at
// Config.SampleRate and drift (confirmed mismatches over time) in the catalog and in
// Metrics. catalog.VerifyState is what the cutover gate and the release report read.
//
// # What a clean run guarantees, and what it does not
//
// A clean run means: every document the old store's scan returned had, at the moment its key
// was compared, its transform in the new store (or the difference was gone on the recheck),
// and every key the new store's scan returned was in the old store. Each key is compared at
// its own point in time; a run is not a snapshot of either store. A document inserted behind
// a scan's position may escape the full pass: the rechecks of changed keys, the rolling sample
// and the next run are there for it. A writer slower than Settle to converge produces a
// confirmed mismatch that is no bug; repairing it is harmless (converge is idempotent).
package verify
