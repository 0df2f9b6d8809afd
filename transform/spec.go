package transform

import (
	"fmt"
	"os"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// The store kinds of an Endpoint.
const (
	StoreMongoDB  = "mongodb"
	StoreDynamoDB = "dynamodb"
)

// Endpoint is a source or target store. Kind says which fields are set.
type Endpoint struct {
	Kind string // StoreMongoDB or StoreDynamoDB

	// MongoDB: all three required. URI is the connection string with its ${NAME} references
	// expanded, credentials included: print it only through RedactURI.
	URI        string
	Database   string
	Collection string

	// DynamoDB: Table and Region required; EndpointURL optional (empty means AWS's own
	// endpoint for Region).
	Table       string
	Region      string
	EndpointURL string
}

// String names the endpoint without its URI, which may hold credentials.
func (e Endpoint) String() string {
	if e.Kind == StoreDynamoDB {
		return fmt.Sprintf("dynamodb %s (%s)", e.Table, e.Region)
	}
	return fmt.Sprintf("mongodb %s.%s", e.Database, e.Collection)
}

// Key says where a document's key lives on each side. All names are top-level fields.
type Key struct {
	// Source is the source key field; default "_id".
	Source string
	// Target is the field that holds the key in a MongoDB target; default "_id". Empty for a
	// DynamoDB target.
	Target string
	// Partition is a DynamoDB target's partition key attribute, which holds the source key
	// value. Empty for a MongoDB target.
	Partition string
	// SortAttribute is a DynamoDB target's sort key attribute, empty when the table has none;
	// every item gets SortValue (a string, int32, int64 or double) there.
	SortAttribute string
	SortValue     any
}

// targetField is the field that holds the key on the target side.
func (k Key) targetField() string {
	if k.Partition != "" {
		return k.Partition
	}
	return k.Target
}

// Spec is a parsed, validated migration spec. It is immutable and safe for concurrent use.
type Spec struct {
	Name   string
	File   string
	Source Endpoint
	Target Endpoint
	Key    Key
	// Indexes are the target collection's secondary indexes (MongoDB targets only), which the
	// backfill creates with it. Empty when the spec has no indexes section.
	Indexes []Index
	// Verify is the verify section (verify.go): invariants, required indexes, settle time,
	// rates and the mismatch budget, defaults applied when the section is absent.
	Verify VerifySpec
	// Version is the first 16 hex digits of the SHA-256 of Redacted(): any edit of the file,
	// even to a comment, makes a new version, but a new password does not, whether written
	// in a URI or taken from the environment. Nor does any other change to the environment:
	// the version covers ${NAME} references, not their values.
	Version string

	redacted         string
	forward, reverse []*step
	reverseDerived   bool
}

// Load reads and parses a spec file.
func Load(path string, opts ...ParseOption) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	return Parse(path, data, opts...)
}

// Redacted returns the spec file's text as it may be stored and shown: every URI's user
// information and secret query parameters (see RedactText) replaced by REDACTED, wherever
// the URI is, comments included, except where they are written as ${NAME} references, which
// are kept as written and never expanded. Everything else is the file's text byte for byte,
// unless a credential is spelled so that it cannot be cut out of the text (YAML escapes, a
// URI folded over lines): then it is the file re-encoded from its YAML tree, comments kept,
// layout not. Version is computed over it.
func (s *Spec) Redacted() string { return s.redacted }

// Steps describes the forward steps in order.
func (s *Spec) Steps() []StepInfo { return infos(s.forward) }

// ReverseSteps describes the reverse steps in the order Reverse runs them: the spec's
// explicit reverse list, or the derived one.
func (s *Spec) ReverseSteps() []StepInfo { return infos(s.reverse) }

// ReverseDerived reports whether the reverse steps were derived from the forward ones rather
// than written in the spec.
func (s *Spec) ReverseDerived() bool { return s.reverseDerived }

func infos(steps []*step) []StepInfo {
	out := make([]StepInfo, len(steps))
	for i, st := range steps {
		out[i] = st.info(i)
	}
	return out
}

// Forward transforms a source document into its target form: the forward steps in order, then
// the key moves to the target key field (key.target or the partition attribute, taking the
// source key field's position) and the sort attribute, if any, is inserted after it. The input
// is never modified; the result may share nested values that no step changed with it.
func (s *Spec) Forward(doc bson.D) (bson.D, error) {
	if indexOf(doc, s.Key.Source) < 0 {
		return nil, s.keyError("forward", s.Key.Source, fmt.Errorf("%w: no field %q", ErrMissingKey, s.Key.Source))
	}
	out := make(bson.D, len(doc), len(doc)+4)
	copy(out, doc)
	if err := run("forward", s.forward, &out); err != nil {
		return nil, err
	}
	if err := s.keyToTarget(&out); err != nil {
		return nil, err
	}
	return out, nil
}

// Reverse transforms a target document back into its source form: the key moves back to
// key.source (the sort attribute, which must hold the spec's constant, is removed), then the
// reverse steps run. The input is never modified.
func (s *Spec) Reverse(doc bson.D) (bson.D, error) {
	out := make(bson.D, len(doc), len(doc)+4)
	copy(out, doc)
	if err := s.keyToSource(&out); err != nil {
		return nil, err
	}
	if err := run("reverse", s.reverse, &out); err != nil {
		return nil, err
	}
	return out, nil
}

func run(dir string, steps []*step, d *bson.D) error {
	for i, st := range steps {
		if err := st.apply(d); err != nil {
			return &StepError{Direction: dir, Step: i, Kind: st.kind, Path: strings.Join(st.path, "."), Err: err}
		}
	}
	return nil
}

func (s *Spec) keyError(dir, field string, err error) error {
	return &StepError{Direction: dir, Step: -1, Kind: "key", Path: field, Err: err}
}

func (s *Spec) keyToTarget(d *bson.D) error {
	src, dst := s.Key.Source, s.Key.targetField()
	i := indexOf(*d, src)
	if dst != src {
		if indexOf(*d, dst) >= 0 {
			return s.keyError("forward", dst, fmt.Errorf("%w: the document already has a field %q", ErrKeyConflict, dst))
		}
		(*d)[i].Key = dst
	}
	if a := s.Key.SortAttribute; a != "" {
		if indexOf(*d, a) >= 0 {
			return s.keyError("forward", a, fmt.Errorf("%w: the document already has a field %q", ErrKeyConflict, a))
		}
		*d = append(*d, bson.E{})
		copy((*d)[i+2:], (*d)[i+1:])
		(*d)[i+1] = bson.E{Key: a, Value: s.Key.SortValue}
	}
	return nil
}

func (s *Spec) keyToSource(d *bson.D) error {
	src, dst := s.Key.Source, s.Key.targetField()
	if indexOf(*d, dst) < 0 {
		return s.keyError("reverse", dst, fmt.Errorf("%w: no field %q", ErrMissingKey, dst))
	}
	if a := s.Key.SortAttribute; a != "" {
		j := indexOf(*d, a)
		if j < 0 {
			return s.keyError("reverse", a, fmt.Errorf("%w: no sort attribute %q", ErrMissingKey, a))
		}
		if !sameSortValue((*d)[j].Value, s.Key.SortValue) {
			return s.keyError("reverse", a, fmt.Errorf("%w: sort attribute %q is %s, want %s",
				ErrKeyConflict, a, formatValue((*d)[j].Value), formatValue(s.Key.SortValue)))
		}
		*d = deleteAt(*d, j)
	}
	if dst != src {
		if indexOf(*d, src) >= 0 {
			return s.keyError("reverse", src, fmt.Errorf("%w: the document already has a field %q", ErrKeyConflict, src))
		}
		(*d)[indexOf(*d, dst)].Key = src
	}
	return nil
}

// sameSortValue compares numbers by value, since DynamoDB has one number type and a store may
// hand back 2 as int64 or double.
func sameSortValue(got, want any) bool {
	g, gok := number(got)
	w, wok := number(want)
	if gok && wok {
		return g == w
	}
	return valueEqual(got, want)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}
