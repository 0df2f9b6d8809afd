// Package verify checks a whole migration: that the new store holds the forward transform of
// every document of the old store, and nothing else. Its Run is the full verification whose
// summary the cutover gate reads (catalog.VerifySummary, a report of kind "verify").
//
// # What a run does
//
// It splits both stores into partitions (Config.Partitions) and scans them with
// Config.Concurrency workers, Config.Batch documents at a time, at most Config.Rate documents
// a second:
//
//   - the old store's scan transforms each document (Config.Forward, then New.Normalize so
//     that values compare as the new store returns them), reads the batch's keys from the new
//     store with one BatchGet, and compares with transform.Equal: a key is missing, differing
//     (with one Diff line per field path) or untransformable (the transform, or the new
//     store's value mapping, rejects the document);
//   - the new store's scan looks its keys up in the old store: a key the old store lacks is
//     extra.
//
// A difference is rechecked once before it counts, after Config.Settle: both stores are read
// again by key (old, new, then old again) and compared afresh, so that a write racing the scan
// is no mismatch when it converges. What survives is a confirmed mismatch: recorded in the
// catalog (Mismatch with Source "verify" and the diff), counted by kind, described in the
// summary's first Samples, and, with Config.Repair, repaired and marked so. Untransformable
// documents also count as errors and are not repaired: a converge would dead-letter them.
//
// At the end (also after a cancellation or a store failure, with the error in Aborted) the
// summary is saved: Keys compared, Mismatches (each key once), Clean when every partition was
// scanned and there was no mismatch and no error, Started and Finished.
//
// # What it guarantees, and what it does not
//
// A clean run means: every document the old store's scan returned had, at the moment its key
// was compared, its transform in the new store, and every key the new store's scan returned
// was in the old store. Each key is compared at its own point in time; a run is not a
// snapshot of either store. A document inserted into the old store behind a scan's position,
// or deleted and re-inserted, may escape that run: what writes during a run leave behind is
// for the change stream path (CDC) and the next run to see. Keep verifying while writes flow,
// and take a clean run as the gate's evidence only while the paths that converge keep running.
//
// A mismatch is confirmed when the recheck still sees it. A writer that updates the old store
// and is slow to converge the key (longer than Settle) between the recheck's reads produces a
// mismatch that is no bug; repairing it is harmless (converge is idempotent), and the next run
// is clean. In the shadow phase, where converges are asynchronous, set Settle to their lag.
//
// A store failure ends the run (it is then not clean and returns the error); a document
// without a readable key is counted as an error and the run goes on.
package verify
