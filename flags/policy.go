package flags

import "slices"

// WriteConverge is how a write on a migrated namespace reaches the new store.
type WriteConverge string

// How writes converge (Policy.WriteConverge).
const (
	// ConvergeNone: writes go to the old store only; the proxy converges nothing.
	ConvergeNone WriteConverge = "none"
	// ConvergeAsync: the write's keys are converged after the client has its reply.
	ConvergeAsync WriteConverge = "async"
	// ConvergeSync: the write's keys (and, for an unkeyed statement, those its filter matched
	// before the write) are converged before the client gets its reply.
	ConvergeSync WriteConverge = "sync"
)

// ConvergeFailure is what a client sees when the converge of its write fails. In every case
// the keys are journaled, so they converge once the new store is back.
type ConvergeFailure string

// What a client sees when a converge fails (Policy.OnConvergeFailure).
const (
	// FailureNone: nothing is converged, so nothing can fail (phase off).
	FailureNone ConvergeFailure = "none"
	// FailureInvisible: the client had its reply before the converge ran (asynchronous).
	FailureInvisible ConvergeFailure = "invisible"
	// FailureOldReply: the client gets the old store's reply unchanged: the old store is the
	// system of record, and the write is in it.
	FailureOldReply ConvergeFailure = "old_reply"
	// FailureWriteConcernError: the client gets the old store's reply with a writeConcernError
	// (code 64, WriteConcernFailed) saying the write is in the old store but not yet in the new
	// one, which now has authority.
	FailureWriteConcernError ConvergeFailure = "write_concern_error"
)

// Path names a long-running part of a migration that runs only in some phases (the "paths
// running" column of the phase table). The runtime (package migration) starts a path when the
// policy lists it and stops it when the policy no longer does.
type Path string

// The paths of a migration. Not every one is built yet: the runtime runs only the paths that
// were registered with it, so a phase may list a path no process runs.
const (
	// PathWatchdog rolls the migration back when the new store misbehaves (flags.Watchdog).
	PathWatchdog Path = "watchdog"
	// PathBackfill copies the history: every document of the old store, converged to the new.
	PathBackfill Path = "backfill"
	// PathForwardCDC tails the old store's change stream and converges each change to new.
	PathForwardCDC Path = "forward-cdc"
	// PathReverseCDC tails the new store's change stream and converges each change to old.
	PathReverseCDC Path = "reverse-cdc"
	// PathVerify verifies continuously: transform(old) against new, key by key.
	PathVerify Path = "verify"
)

// AllPaths lists every path, in the order the runtime reports them.
var AllPaths = []Path{PathWatchdog, PathBackfill, PathForwardCDC, PathReverseCDC, PathVerify}

// Policy is what a migration's flags mean for the parts that act on them: the design's phase
// table (docs/architecture.md, "Phases and flags") as values. PolicyFor computes it; the proxy
// and the runtime read its fields and never compare phase names themselves.
type Policy struct {
	// Phase is the phase the policy was computed for ("off" for an unknown phase).
	Phase string `json:"phase"`
	// WriteConverge is how writes from old-schema applications reach the new store.
	WriteConverge WriteConverge `json:"write_converge"`
	// OnConvergeFailure is what the client sees when its write's converge fails.
	OnConvergeFailure ConvergeFailure `json:"on_converge_failure"`
	// BlockWrites refuses writes to the migrated collection (write_block, outside phase off):
	// drivers get NotWritablePrimary and retry.
	BlockWrites bool `json:"block_writes"`
	// ReadsFromNew serves key look-ups from the new store, reverse-transformed (read_source=new,
	// allowed only once the new store has authority: cutover and finalized).
	ReadsFromNew bool `json:"reads_from_new"`
	// ShadowReadPercent is the share of finds compared against the new store: the flag's value
	// in every phase but off, where it is 0.
	ShadowReadPercent float64 `json:"shadow_read_percent"`
	// Paths are the long-running paths this phase runs, in AllPaths order. Shared: do not
	// modify.
	Paths []Path `json:"paths"`
}

// Runs reports whether the policy runs path p.
func (p Policy) Runs(path Path) bool { return slices.Contains(p.Paths, path) }

// The "paths running" column, one slice per phase, shared by every Policy.
var (
	pathsShadow  = []Path{PathBackfill, PathForwardCDC, PathVerify}
	pathsDual    = []Path{PathWatchdog, PathBackfill, PathForwardCDC, PathVerify}
	pathsCutover = []Path{PathWatchdog, PathForwardCDC, PathReverseCDC, PathVerify}
	// Finalized keeps the old store current from new's stream until it is retired, so that a
	// rollback from finalized loses none of the writes made to new.
	pathsFinalized = []Path{PathReverseCDC}
)

// PolicyFor returns the policy of v: the phase table, in one switch. An unknown or empty phase
// is off. It does not allocate, so a caller may compute it on every flag change.
//
//	phase      writes converge  converge fails  key look-ups  paths running
//	off        none             —               old           none
//	shadow     async            invisible       old           backfill, forward CDC, verify
//	dual       sync             old reply       old           watchdog, backfill, forward CDC, verify
//	cutover    sync             writeConcern    new           watchdog, forward and reverse CDC, verify
//	finalized  sync             writeConcern    new           reverse CDC (until old is retired)
//
// read_source=new serves look-ups from new only in cutover and finalized; write_block and
// shadow_read_percent apply in every phase but off.
func PolicyFor(v Values) Policy {
	var p Policy
	switch v.Phase {
	case PhaseShadow:
		p = Policy{Phase: PhaseShadow, WriteConverge: ConvergeAsync, OnConvergeFailure: FailureInvisible, Paths: pathsShadow}
	case PhaseDual:
		p = Policy{Phase: PhaseDual, WriteConverge: ConvergeSync, OnConvergeFailure: FailureOldReply, Paths: pathsDual}
	case PhaseCutover:
		p = Policy{Phase: PhaseCutover, WriteConverge: ConvergeSync, OnConvergeFailure: FailureWriteConcernError,
			ReadsFromNew: v.ReadSource == ReadNew, Paths: pathsCutover}
	case PhaseFinalized:
		p = Policy{Phase: PhaseFinalized, WriteConverge: ConvergeSync, OnConvergeFailure: FailureWriteConcernError,
			ReadsFromNew: v.ReadSource == ReadNew, Paths: pathsFinalized}
	default:
		return Policy{Phase: PhaseOff, WriteConverge: ConvergeNone, OnConvergeFailure: FailureNone}
	}
	p.BlockWrites = v.WriteBlock
	p.ShadowReadPercent = v.ShadowReadPercent
	return p
}
