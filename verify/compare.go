package verify

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/catalog"
	"github.com/tandemdb/tandem/transform"
)

// outcome is the result of comparing one key: same (kind ""), or a mismatch of a kind with
// its description.
type outcome struct {
	kind   catalog.MismatchKind // "" when the stores agree
	detail string               // what is wrong, without values
	diff   []string             // the legacy Mismatch's Diff lines (with values)
	fields []transform.FieldDiff
}

func (o outcome) same() bool { return o.kind == "" }

// classify compares old (nil: absent) with new (nil: absent), then checks the invariants on
// the new document.
func (v *verifier) classify(old, cur bson.D) outcome {
	switch {
	case old == nil && cur == nil:
		return outcome{}
	case old == nil:
		d := "extra in the new store: the old store has no document with this key"
		return outcome{kind: catalog.KindExtra, detail: d, diff: []string{d}}
	}
	want, err := v.cfg.Forward(old)
	if err != nil {
		d := "transform failed: " + err.Error()
		return outcome{kind: catalog.KindUntransformable, detail: d, diff: []string{d}}
	}
	if want, err = v.cfg.New.Normalize(want); err != nil {
		d := "the new store cannot hold the transformed document: " + err.Error()
		return outcome{kind: catalog.KindUntransformable, detail: d, diff: []string{d}}
	}
	if cur == nil {
		d := "missing in the new store"
		return outcome{kind: catalog.KindMissing, detail: d, diff: []string{d}}
	}
	if !transform.Equal(want, cur) {
		fds := transform.FieldDiffs(want, cur)
		paths := make([]string, len(fds))
		lines := make([]string, len(fds))
		for i, fd := range fds {
			paths[i], lines[i] = fd.Path, fd.String()
		}
		return outcome{kind: catalog.KindDiffering, detail: fmt.Sprintf("%d fields differ: %s", len(fds), strings.Join(paths, ", ")),
			diff: lines, fields: fds}
	}
	return v.checkInvariants(cur)
}

// checkInvariants evaluates every invariant on a new document; the first that does not hold
// (or cannot be evaluated) is the outcome.
func (v *verifier) checkInvariants(doc bson.D) outcome {
	for _, iv := range v.cfg.Invariants {
		ok, err := iv.Holds(doc)
		switch {
		case err != nil:
			d := fmt.Sprintf("invariant %s (spec line %d) cannot be evaluated: %v", iv.Name, iv.Line, err)
			return outcome{kind: catalog.KindInvariantBroken, detail: d, diff: []string{d}}
		case !ok:
			d := fmt.Sprintf("invariant %s (spec line %d) is false: %s", iv.Name, iv.Line, iv.Expr)
			return outcome{kind: catalog.KindInvariantBroken, detail: d, diff: []string{d}}
		}
	}
	return outcome{}
}

// fieldRecords turns field differences into what the catalog keeps: paths, types and hashes,
// and the values (which the catalog's readers leave out unless asked).
func fieldRecords(fds []transform.FieldDiff) []catalog.VerifyFieldDiff {
	if len(fds) == 0 {
		return nil
	}
	out := make([]catalog.VerifyFieldDiff, len(fds))
	for i, fd := range fds {
		r := catalog.VerifyFieldDiff{Path: fd.Path}
		if !fd.WantAbsent {
			r.WantType, r.WantHash, r.Want = typeName(fd.Want), valueHash(fd.Want), fd.Want
		}
		if !fd.GotAbsent {
			r.GotType, r.GotHash, r.Got = typeName(fd.Got), valueHash(fd.Got), fd.Got
		}
		out[i] = r
	}
	return out
}

// typeName is a value's BSON type name as $type spells it.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case int32:
		return "int"
	case int64:
		return "long"
	case float64:
		return "double"
	case bool:
		return "bool"
	case bson.D, bson.M:
		return "object"
	case bson.A:
		return "array"
	case bson.ObjectID:
		return "objectId"
	case bson.DateTime:
		return "date"
	case bson.Decimal128:
		return "decimal"
	case bson.Binary:
		return "binData"
	}
	return fmt.Sprintf("%T", v)
}

// valueHash is the first 16 hex digits of the SHA-256 of the value's canonical Extended JSON.
func valueHash(v any) string {
	b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, true, false)
	if err != nil {
		b = fmt.Appendf(nil, "%T:%v", v, v)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// sameDoc says whether two reads of a store gave the same document (nil: absent).
func sameDoc(a, b bson.D) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return transform.Equal(a, b)
}
