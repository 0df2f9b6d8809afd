package report

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strings"
)

// The verifiers record a mismatch as lines of text (catalog.Mismatch.Diff): transform.Diff's
// "path: want T V, got T V", "path: missing (want T V)" and "path: unexpected T V", where T is
// the value's Go type and V its canonical extended JSON cut to 60 characters (57 and "..."),
// or one fixed line for a whole document. parseDiff reads them back into FieldDiffs. It never
// lets a value reach a field that is shown without values: a line it cannot read exactly
// keeps only its path, and the rest goes to Detail.

// Whole-document lines, by the verifier that writes them (verify, shadow read), and the kind
// they mean: fixed lines, and prefixes whose rest may quote values.
var (
	fixedLines = map[string]string{
		"missing in the new store": KindMissing,
		"extra in the new store: the old store has no document with this key": KindExtra,
		"document missing from the new store":                                 KindMissing,
		"document in the new store but not in the old":                        KindExtra,
	}
	detailPrefixes = []struct{ prefix, kind string }{
		{"transform failed: ", KindUntransformable},
		{"the new store cannot hold the transformed document: ", KindUntransformable},
	}
)

// renderCut is the length of a value transform.Diff cut short.
const renderCut = 60

// typeRE is a Go type name as %T prints it.
var typeRE = regexp.MustCompile(`^[A-Za-z0-9_.\[\]*<>]+$`)

// parseDiff returns the kind of a recorded mismatch and its fields, values included (see
// Report.WithoutValues).
func parseDiff(lines []string) (kind string, fields []FieldDiff) {
	kind = KindDiffering
	fields = make([]FieldDiff, 0, len(lines))
	for _, l := range lines {
		if d, k, ok := documentLine(l); ok {
			kind = k
			fields = append(fields, d)
			continue
		}
		fields = append(fields, fieldLine(l))
	}
	return kind, fields
}

func documentLine(l string) (FieldDiff, string, bool) {
	if kind, ok := fixedLines[l]; ok {
		return FieldDiff{Change: ChangeDocument, Note: l}, kind, true
	}
	for _, dp := range detailPrefixes {
		if rest, ok := strings.CutPrefix(l, dp.prefix); ok {
			return FieldDiff{Change: ChangeDocument, Note: strings.TrimSuffix(dp.prefix, ": "), Detail: &rest}, dp.kind, true
		}
	}
	return FieldDiff{}, "", false
}

// fieldLine reads one "path: ..." line; what it cannot read exactly is kept as Detail.
func fieldLine(l string) FieldDiff {
	path, rest, ok := strings.Cut(l, ": ")
	if !ok {
		return FieldDiff{Change: ChangeDocument, Note: "a difference this report cannot read", Detail: &l}
	}
	d := FieldDiff{Path: path}
	switch {
	case strings.HasPrefix(rest, "want "):
		d.Change = ChangeDiffers
		for _, want := range readValues(rest[len("want "):]) {
			after, ok := strings.CutPrefix(want.rest, ", got ")
			if !ok {
				continue
			}
			for _, got := range readValues(after) {
				if got.rest == "" {
					d.Want, d.Got = want.v, got.v
					return d
				}
			}
		}
	case strings.HasPrefix(rest, "missing (want "):
		d.Change = ChangeMissing
		for _, want := range readValues(rest[len("missing (want "):]) {
			if want.rest == ")" {
				d.Want = want.v
				return d
			}
		}
	case strings.HasPrefix(rest, "unexpected "):
		d.Change = ChangeUnexpected
		for _, got := range readValues(rest[len("unexpected "):]) {
			if got.rest == "" {
				d.Got = got.v
				return d
			}
		}
	default:
		d.Change = ChangeDiffers
	}
	d.Detail = &rest
	return d
}

// candidate is one way to read "T V" at the start of a text, and the text after it.
type candidate struct {
	v    *Value
	rest string
}

// readValues returns the readings of "T V" at the start of s: V as one whole JSON value, and
// V cut short (exactly renderCut characters ending in "..."). A cut string can read as JSON
// up to a later quote, so the caller keeps the reading after which the line goes on as it must.
func readValues(s string) []candidate {
	typ, v, ok := strings.Cut(s, " ")
	if !ok || !typeRE.MatchString(typ) {
		return nil
	}
	var out []candidate
	add := func(n int) {
		text := v[:n]
		out = append(out, candidate{&Value{Type: typ, Hash: hashValue(text), Value: &text}, v[n:]})
	}
	if len(v) >= renderCut && v[renderCut-3:renderCut] == "..." {
		add(renderCut)
	}
	if n := jsonPrefix(v); n > 0 && n != renderCut {
		add(n)
	}
	return out
}

// jsonPrefix returns the length of the one JSON value s starts with, or -1.
func jsonPrefix(s string) int {
	dec := json.NewDecoder(strings.NewReader(s))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return -1
	}
	n := int(dec.InputOffset())
	if !bytes.Equal(bytes.TrimSpace([]byte(s[:n])), raw) {
		return -1 // leading space: not how the verifier writes a value
	}
	return n
}

// hashValue is a Value's Hash: "sha256:" and 16 hex digits.
func hashValue(text string) string {
	sum := sha256.Sum256([]byte(text))
	return "sha256:" + hex.EncodeToString(sum[:])[:16]
}
