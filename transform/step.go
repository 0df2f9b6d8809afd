package transform

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The step kinds, as spelled in a spec.
const (
	KindRename  = "rename"
	KindMove    = "move"
	KindDrop    = "drop"
	KindSet     = "set"
	KindDefault = "default"
	KindConvert = "convert"
	KindCompute = "compute"
)

// stepKinds lists the kinds in the order messages name them.
var stepKinds = []string{KindRename, KindMove, KindDrop, KindSet, KindDefault, KindConvert, KindCompute}

// StepInfo describes one step for printing, e.g. "forward[2] convert: age int32 -> int64".
type StepInfo struct {
	Index   int
	Kind    string
	Summary string
	// Line is the step's line in the spec file; 0 for a derived reverse step.
	Line int
}

// step is one parsed step. It is never changed after Parse, so a Spec is safe for concurrent use.
type step struct {
	kind      string
	line, col int // of the step kind in the spec; 0 for a derived step
	// wline, wcol locate the path the step writes (to, or path); 0 for a derived step.
	wline, wcol int

	path, from []string // from: rename and move only
	value      any      // set and default
	convFrom   string   // convert; "" when the spec gives no from
	convTo     string
	onError    string
	onErrorDef any // convert with on_error: default
	expr       string
	prog       *celProgram
}

func (s *step) info(i int) StepInfo {
	return StepInfo{Index: i, Kind: s.kind, Summary: RedactText(s.summary()), Line: s.line}
}

func (s *step) summary() string {
	p := strings.Join(s.path, ".")
	switch s.kind {
	case KindRename, KindMove:
		return strings.Join(s.from, ".") + " -> " + p
	case KindDrop:
		return p
	case KindSet:
		return p + " = " + formatValue(s.value)
	case KindDefault:
		return p + " = " + formatValue(s.value) + " if absent"
	case KindConvert:
		from := s.convFrom
		if from == "" {
			from = "any"
		}
		sum := fmt.Sprintf("%s %s -> %s, on_error %s", p, from, s.convTo, s.onError)
		if s.onError == OnErrorDefault {
			sum += " " + formatValue(s.onErrorDef)
		}
		return sum
	case KindCompute:
		return p + " = " + s.expr
	}
	return p
}

// formatValue renders a constant as relaxed Extended JSON.
func formatValue(v any) string {
	b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, false, false)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b[len(`{"v":`) : len(b)-1])
}

// irreversible says why the step has no derived reverse, or "" when it has one.
func (s *step) irreversible() string {
	switch s.kind {
	case KindDrop:
		return "drop removes data that no derived step can restore"
	case KindDefault:
		return "default cannot tell a value it filled in from one the document had"
	case KindConvert:
		switch {
		case s.convFrom == "":
			return "convert without from: the original type is unknown"
		case !isLossless(s.convFrom, s.convTo):
			return fmt.Sprintf("convert %s -> %s is not a lossless pair", s.convFrom, s.convTo)
		case s.onError != OnErrorFail:
			return fmt.Sprintf("convert with on_error: %s cannot be undone", s.onError)
		}
	}
	return ""
}

// reverse returns the step that undoes s; s must be reversible. Reversing set and compute
// drops the path, which restores the document only if it lacked that field.
func (s *step) reverse() *step {
	switch s.kind {
	case KindRename, KindMove:
		return &step{kind: s.kind, from: s.path, path: s.from}
	case KindSet, KindCompute:
		return &step{kind: KindDrop, path: s.path}
	case KindConvert:
		return &step{kind: KindConvert, path: s.path, convFrom: s.convTo, convTo: s.convFrom, onError: OnErrorFail}
	}
	panic("transform: reverse of irreversible step " + s.kind)
}

// deriveReverse reverses each step, in reverse order.
func deriveReverse(forward []*step) []*step {
	rev := make([]*step, len(forward))
	for i, s := range forward {
		rev[len(forward)-1-i] = s.reverse()
	}
	return rev
}

// apply runs the step on a document whose top level the caller owns.
func (s *step) apply(d *bson.D) error {
	switch s.kind {
	case KindRename, KindMove:
		return rename(d, s.from, s.path)
	case KindDrop:
		remove(d, s.path)
		return nil
	case KindSet:
		return set(d, s.path, deepCopy(s.value))
	case KindDefault:
		if _, ok := get(*d, s.path); ok {
			return nil
		}
		return set(d, s.path, deepCopy(s.value))
	case KindConvert:
		return s.convert(d)
	case KindCompute:
		v, err := evalCEL(s.prog, *d)
		if err != nil {
			return err
		}
		return set(d, s.path, v)
	}
	return fmt.Errorf("unknown step kind %q", s.kind)
}

// convert applies the on_error policy to a failed conversion; a missing field is left missing.
func (s *step) convert(d *bson.D) error {
	v, ok := get(*d, s.path)
	if !ok || v == nil {
		return nil
	}
	out, err := convertValue(v, s.convFrom, s.convTo)
	if err != nil {
		switch s.onError {
		case OnErrorNull:
			out = nil
		case OnErrorKeep:
			return nil
		case OnErrorDrop:
			remove(d, s.path)
			return nil
		case OnErrorDefault:
			out = deepCopy(s.onErrorDef)
		default:
			return err
		}
	}
	return set(d, s.path, out)
}
