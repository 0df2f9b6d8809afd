package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// kindFlags is the audit kind of a SetFlags change.
const kindFlags = "flags"

// FlagPhase is the flag stored in the migration's phase field; every other flag is stored under
// Migration.Flags.
const FlagPhase = "phase"

// FlagChange is one flag's move within a SetFlags change.
type FlagChange struct {
	Flag string `bson:"flag" json:"flag"`
	// From is the value the caller expects the flag to have. Optional: when empty it is filled
	// in from the stored state; when set and different, the change fails with ErrConflict.
	From string `bson:"from" json:"from"`
	To   string `bson:"to" json:"to"`
}

// flagField names the migrations field a flag is stored in.
func flagField(flag string) string {
	if flag == FlagPhase {
		return "phase"
	}
	return "flags." + flag
}

// flagValue returns a flag's stored value ("" when never set).
func (m Migration) flagValue(flag string) string {
	if flag == FlagPhase {
		return m.Phase
	}
	return m.Flags[flag]
}

// checkFlagName refuses names that cannot be stored as a field of the flags sub-document.
func checkFlagName(name string) error {
	switch {
	case name == "":
		return errors.New("empty flag name")
	case strings.ContainsAny(name, ".$\x00"):
		return fmt.Errorf("flag name %q contains '.', '$' or NUL", name)
	}
	return nil
}

// SetFlags changes several flags of a migration as one change: one revision, one audit entry
// (kind "flags", recording every flag's from and to, who and why), applied only if the
// migration is still at fromRevision. Of several racing changes from the same revision exactly
// one succeeds; the others fail with ErrConflict and should re-read and decide again. Which
// values are allowed is the caller's decision (package flags); the catalog only refuses names
// it cannot store, a flag named twice and an empty change. It returns the migration as the
// change left it.
func (c *Catalog) SetFlags(ctx context.Context, migration string, fromRevision int64, changes []FlagChange, who, why string) (Migration, error) {
	if len(changes) == 0 {
		return Migration{}, fmt.Errorf("changing flags of %s: no changes given", migration)
	}
	seen := make(map[string]bool, len(changes))
	for _, ch := range changes {
		if err := checkFlagName(ch.Flag); err != nil {
			return Migration{}, fmt.Errorf("changing flags of %s: %w", migration, err)
		}
		if seen[ch.Flag] {
			return Migration{}, fmt.Errorf("changing flags of %s: flag %s named twice", migration, ch.Flag)
		}
		seen[ch.Flag] = true
	}
	m, err := c.Migration(ctx, migration)
	if err != nil {
		return Migration{}, err
	}
	if m.Revision != fromRevision {
		return Migration{}, fmt.Errorf("changing flags of %s from revision %d: it is at revision %d: %w", migration, fromRevision, m.Revision, ErrConflict)
	}
	filled := make([]FlagChange, len(changes))
	for i, ch := range changes {
		cur := m.flagValue(ch.Flag)
		if ch.From != "" && ch.From != cur {
			return Migration{}, fmt.Errorf("changing %s of %s from %q: it is %q: %w", ch.Flag, migration, ch.From, cur, ErrConflict)
		}
		ch.From = cur
		filled[i] = ch
	}
	e := AuditEntry{Kind: kindFlags, Changes: filled, Who: who, Why: why, At: c.now().UTC()}
	e.Subject, e.From, e.To = summarize(filled)
	if err := c.change(ctx, m, e); err != nil {
		return Migration{}, err
	}
	// The migration as this change left it, without reading it again: a later change may
	// already have followed.
	m.Revision++
	m.UpdatedAt = e.At
	flags := make(map[string]string, len(m.Flags)+len(filled))
	for k, v := range m.Flags {
		flags[k] = v
	}
	for _, ch := range filled {
		if ch.Flag == FlagPhase {
			m.Phase = ch.To
		} else {
			flags[ch.Flag] = ch.To
		}
	}
	m.Flags = flags
	return m, nil
}

// summarize renders a flags change for the audit entry's Subject, From and To: the flag and its
// values for a single change, "flag=value" lists for several.
func summarize(changes []FlagChange) (subject, from, to string) {
	if len(changes) == 1 {
		return changes[0].Flag, changes[0].From, changes[0].To
	}
	names := make([]string, len(changes))
	froms := make([]string, len(changes))
	tos := make([]string, len(changes))
	for i, ch := range changes {
		names[i] = ch.Flag
		froms[i] = ch.Flag + "=" + ch.From
		tos[i] = ch.Flag + "=" + ch.To
	}
	return strings.Join(names, ","), strings.Join(froms, " "), strings.Join(tos, " ")
}
