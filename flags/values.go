package flags

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/tandemdb/tandem/catalog"
)

// Names lists every flag, in the order they are shown and audited.
var Names = []string{FlagPhase, FlagReadSource, FlagShadowReadPercent, FlagWriteBlock}

// Phases lists the phases in the order a migration moves forward through them.
var Phases = []string{PhaseOff, PhaseShadow, PhaseDual, PhaseCutover, PhaseFinalized}

var readSources = []string{ReadOld, ReadNew}

// phaseIndex returns a phase's place in Phases, -1 for an unknown phase.
func phaseIndex(p string) int { return slices.Index(Phases, p) }

// nextPhase returns the phase after p, "" after finalized.
func nextPhase(p string) string {
	i := phaseIndex(p)
	if i < 0 || i == len(Phases)-1 {
		return ""
	}
	return Phases[i+1]
}

// AdvanceTarget is the phase Advance moves a migration in phase p to: the next one, except that
// cutover is entered only through Cutover (which checks the gates). "" when there is none: in
// dual (cut over instead), in finalized, or for an unknown phase.
func AdvanceTarget(p string) string {
	if n := nextPhase(p); n != PhaseCutover {
		return n
	}
	return ""
}

// previousPhase returns the phase before p, "" before off.
func previousPhase(p string) string {
	i := phaseIndex(p)
	if i <= 0 {
		return ""
	}
	return Phases[i-1]
}

// readsNewAllowed reports whether read_source=new is allowed in phase p: only once the new
// store has authority, as the phase table (PolicyFor) says.
func readsNewAllowed(p string) bool {
	return PolicyFor(Values{Phase: p, ReadSource: ReadNew}).ReadsFromNew
}

// canonical checks one flag's value and returns it in the form the catalog stores. The error
// names the flag and lists what it accepts.
func canonical(name, value string) (string, error) {
	switch name {
	case FlagPhase:
		if phaseIndex(value) < 0 {
			return "", fmt.Errorf("%w: phase %q: want one of %s", ErrBadValue, value, strings.Join(Phases, ", "))
		}
		return value, nil
	case FlagReadSource:
		if !slices.Contains(readSources, value) {
			return "", fmt.Errorf("%w: read_source %q: want one of %s", ErrBadValue, value, strings.Join(readSources, ", "))
		}
		return value, nil
	case FlagShadowReadPercent:
		f, err := parsePercent(value)
		if err != nil {
			return "", err
		}
		return formatPercent(f), nil
	case FlagWriteBlock:
		if value != "true" && value != "false" {
			return "", fmt.Errorf("%w: write_block %q: want true or false", ErrBadValue, value)
		}
		return value, nil
	}
	return "", unknownFlag(name)
}

func unknownFlag(name string) error {
	return fmt.Errorf("%w %q: valid flags are %s", ErrUnknownFlag, name, strings.Join(Names, ", "))
}

func parsePercent(value string) (float64, error) {
	f, err := strconv.ParseFloat(value, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > 100 {
		return 0, fmt.Errorf("%w: shadow_read_percent %q: want a number from 0 to 100", ErrBadValue, value)
	}
	return f, nil
}

func formatPercent(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// get returns one flag of v in its canonical string form.
func (v Values) get(name string) string {
	switch name {
	case FlagPhase:
		return v.Phase
	case FlagReadSource:
		return v.ReadSource
	case FlagShadowReadPercent:
		return formatPercent(v.ShadowReadPercent)
	case FlagWriteBlock:
		return strconv.FormatBool(v.WriteBlock)
	}
	return ""
}

// set assigns one flag of v from a canonical value (see canonical).
func (v *Values) set(name, value string) {
	switch name {
	case FlagPhase:
		v.Phase = value
	case FlagReadSource:
		v.ReadSource = value
	case FlagShadowReadPercent:
		v.ShadowReadPercent, _ = strconv.ParseFloat(value, 64)
	case FlagWriteBlock:
		v.WriteBlock = value == "true"
	}
}

// valuesOf reads a migration's flags as stored in the catalog. A flag never stored has its
// default; a stored value this code cannot read is an error naming it, never a silent default.
func valuesOf(m catalog.Migration) (Values, error) {
	v := Defaults()
	v.Revision = m.Revision
	if m.Phase != "" {
		if phaseIndex(m.Phase) < 0 {
			return v, fmt.Errorf("migration %s: stored phase %q is not one of %s", m.Name, m.Phase, strings.Join(Phases, ", "))
		}
		v.Phase = m.Phase
	}
	for _, name := range Names[1:] {
		raw, ok := m.Flags[name]
		if !ok {
			continue
		}
		c, err := canonical(name, raw)
		if err != nil {
			return v, fmt.Errorf("migration %s: stored flag: %w", m.Name, err)
		}
		v.set(name, c)
	}
	return v, nil
}

// changesBetween lists the flags that differ between cur and next, in Names order.
func changesBetween(cur, next Values) []catalog.FlagChange {
	var out []catalog.FlagChange
	for _, name := range Names {
		if a, b := cur.get(name), next.get(name); a != b {
			// From stays empty: the catalog fills it in from what it stores, and the revision
			// check already guarantees that is what cur was read from.
			out = append(out, catalog.FlagChange{Flag: name, To: b})
		}
	}
	return out
}
