// Package flags holds the migration flags (phase, read_source, shadow_read_percent, write_block),
// their validation and phase rules, the catalog-backed OpenFeature provider, the cutover gates
// and the automatic rollback watchdog.
//
// A flag is addressed in OpenFeature as "MIGRATION.FLAG", for example "users-v2.phase". The
// evaluation context carries the database, the collection, the application name from the driver
// handshake and an optional tenant (see Context).
package flags

// Flag names.
const (
	FlagPhase             = "phase"
	FlagReadSource        = "read_source"
	FlagShadowReadPercent = "shadow_read_percent"
	FlagWriteBlock        = "write_block"
)

// Phases, in the order a migration moves through them.
const (
	PhaseOff       = "off"
	PhaseShadow    = "shadow"
	PhaseDual      = "dual"
	PhaseCutover   = "cutover"
	PhaseFinalized = "finalized"
)

// Read sources.
const (
	ReadOld = "old"
	ReadNew = "new"
)

// Values are one migration's flags as a proxy uses them.
type Values struct {
	Phase             string  `json:"phase" bson:"phase"`
	ReadSource        string  `json:"read_source" bson:"read_source"`
	ShadowReadPercent float64 `json:"shadow_read_percent" bson:"shadow_read_percent"`
	WriteBlock        bool    `json:"write_block" bson:"write_block"`
	// Revision is the catalog revision these values were read at (0 when not from the catalog).
	Revision int64 `json:"revision" bson:"revision"`
}

// Defaults are the values of a migration nobody has touched: everything goes to old.
func Defaults() Values {
	return Values{Phase: PhaseOff, ReadSource: ReadOld}
}

// Context is what a flag is evaluated for: the request's namespace, the application name the
// driver sent in its handshake (client.application.name), and an optional tenant.
type Context struct {
	Migration  string
	Database   string
	Collection string
	App        string
	Tenant     string
}

// GateResult is the outcome of one cutover gate.
type GateResult struct {
	Gate   string `json:"gate"`   // "verification", "change_lag", "reverse_path"
	OK     bool   `json:"ok"`     // whether the gate passed
	Detail string `json:"detail"` // what was measured, or why it failed
}
