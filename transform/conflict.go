package transform

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// conflicts reports each step of a list (named list, "forward" or "reverse") that writes a
// path an earlier step of the same list wrote or removed, as "Path conflicts" in the package
// doc describes. It names the nearest such earlier step.
func (p *parser) conflicts(list string, steps []*step) {
	for j, later := range steps {
		for i := j - 1; i >= 0; i-- {
			why := conflict(fmt.Sprintf("%s[%d]", list, i), steps[i], later)
			if why == "" {
				continue
			}
			field := "path"
			if later.kind == KindRename || later.kind == KindMove {
				field = "to"
			}
			e := &SpecError{File: p.file, Line: later.wline, Column: later.wcol, Path: fmt.Sprintf("%s[%d].%s.%s", list, j, later.kind, field),
				Msg: RedactText(fmt.Sprintf("%v: %s", ErrPathConflict, why)), Err: ErrPathConflict}
			p.errs = append(p.errs, e)
			break
		}
	}
}

// conflict says why later, a step after earlier (named ref), conflicts with it, or "": see
// "Path conflicts" in the package doc. Only set, default, compute and the `to` of a rename or
// move can conflict; drop, convert and a rename's `from` read or change what an earlier step
// wrote (a temporary field, a chain of renames, a convert of a renamed field).
func conflict(ref string, earlier, later *step) string {
	switch later.kind {
	case KindSet, KindDefault, KindCompute, KindRename, KindMove:
	default:
		return ""
	}
	w := later.path
	switch earlier.kind {
	case KindRename, KindMove:
		if overlap(w, earlier.from) {
			return fmt.Sprintf("%s moved %s away (to %s)%s", ref, dotted(earlier.from), dotted(earlier.path), relate(w, earlier.from))
		}
	case KindDrop:
		if overlap(w, earlier.path) {
			return fmt.Sprintf("%s dropped %s%s", ref, dotted(earlier.path), relate(w, earlier.path))
		}
		return ""
	}
	e := earlier.path
	if later.kind != KindDefault && (equalPath(w, e) || inside(e, w)) {
		return fmt.Sprintf("%s already wrote %s%s", ref, dotted(e), relate(w, e))
	}
	if inside(w, e) {
		switch {
		case earlier.kind == KindSet && !isDocument(earlier.value):
			return fmt.Sprintf("%s sets %s to %s, not a document%s", ref, dotted(e), formatValue(earlier.value), relate(w, e))
		case earlier.kind == KindConvert:
			return fmt.Sprintf("%s converts %s to %s, not a document%s", ref, dotted(e), earlier.convTo, relate(w, e))
		}
	}
	return ""
}

// overlap reports whether paths a and b are the same field or one is inside the other.
func overlap(a, b []string) bool { return equalPath(a, b) || inside(a, b) || inside(b, a) }

// relate is the clause that says how the written path w lies to an earlier step's path e,
// which overlap: "" when they are equal.
func relate(w, e []string) string {
	switch {
	case inside(w, e):
		return fmt.Sprintf(", and %s is inside it", dotted(w))
	case inside(e, w):
		return fmt.Sprintf(", which is inside %s", dotted(w))
	}
	return ""
}

func dotted(p []string) string { return strings.Join(p, ".") }

func equalPath(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// inside reports whether a is strictly inside b: b is a proper prefix of a.
func inside(a, b []string) bool {
	return len(a) > len(b) && equalPath(a[:len(b)], b)
}

func isDocument(v any) bool {
	_, ok := v.(bson.D)
	return ok
}
