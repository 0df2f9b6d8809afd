package transform

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	"go.mongodb.org/mongo-driver/v2/bson"
	"gopkg.in/yaml.v3"
)

// The spec's optional `verify:` section: what verification checks beyond field equality, and
// how it runs. Every field is optional.
//
//	verify:
//	  settle: 5s            # a difference younger than this is pending, not a mismatch
//	  rate: 2000            # documents per second the full pass reads, 0 unlimited
//	  sample_rate: 50       # continuous mode's rolling sample, documents per second, 0 none
//	  mismatch_budget: 0    # confirmed mismatches a release may carry
//	  max_backlog: 1000     # the cutover gate's bound on keys waiting for a recheck
//	  invariants:           # CEL over the new document, true when it holds
//	    - name: email-domain
//	      expr: 'doc.email_domain == doc.profile.email.split("@")[1]'
//	  indexes:              # indexes the new store must have (as the spec's indexes:)
//	    - keys: {email_domain: 1}
//	  plan: join            # the full pass's plan: merge, join or lookup; default: merge
//	                        # for MongoDB → MongoDB by _id, join otherwise
//	  spill_dir: /var/tmp   # where the join keeps its bucket files; default the temp dir
//
// For a DynamoDB target an index is a global secondary index: `name` is required and `keys`
// lists its partition key attribute, then its sort key attribute, if any (orders ignored).

// Defaults of VerifySpec.
const (
	DefaultMaxBacklog = 1000
)

// VerifySpec is the spec's verify section, defaults applied.
type VerifySpec struct {
	// Settle is how long a difference may take to converge before it counts; default 0.
	Settle time.Duration
	// Rate and SampleRate are documents per second of the full pass and the continuous rolling
	// sample; 0 means unlimited (Rate) or no sample (SampleRate).
	Rate, SampleRate float64
	// MismatchBudget is the confirmed mismatches a release may carry; default 0.
	MismatchBudget int64
	// MaxBacklog is the most keys waiting for a recheck that the cutover gate passes;
	// default 1000.
	MaxBacklog int64
	// Invariants must hold for every new document compared.
	Invariants []Invariant
	// Indexes are the indexes the new store must have, besides the spec's indexes section
	// (which the backfill creates, and which verification requires too).
	Indexes []Index
	// Plan is the full pass's plan ("merge", "join", "lookup"), "" for the default.
	Plan string
	// SpillDir is where the join plan spills; "" for the system's temporary directory.
	SpillDir string
}

// The full pass's plans a verify section may name (verify.Config.Plan).
var verifyPlans = []string{"merge", "join", "lookup"}

// Invariant is a CEL expression over the new document (as `doc`) that must be true.
type Invariant struct {
	// Name names it in mismatches; default "invariants[i]".
	Name string
	// Expr is the expression as written; Line is its line in the spec file.
	Expr string
	Line int

	prg *celProgram
}

// ErrInvariant means an invariant's expression did not give true or false (it failed to
// evaluate, or gave another type).
var ErrInvariant = errors.New("invariant could not be evaluated")

// Holds evaluates the invariant over a new document; an error wraps ErrInvariant.
func (iv Invariant) Holds(doc bson.D) (bool, error) {
	v, err := evalCEL(iv.prg, doc)
	if err != nil {
		return false, fmt.Errorf("%w: %s: %v", ErrInvariant, iv.Name, err)
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("%w: %s gave %T, want bool", ErrInvariant, iv.Name, v)
	}
	return b, nil
}

// RequiredIndexes are the indexes verification requires of the new store: the spec's indexes
// section, then verify's.
func (s *Spec) RequiredIndexes() []Index {
	return append(append([]Index(nil), s.Indexes...), s.Verify.Indexes...)
}

var verifyKeys = []string{"settle", "rate", "sample_rate", "mismatch_budget", "max_backlog", "invariants", "indexes", "plan", "spill_dir"}

// verify parses the optional verify section.
func (p *parser) verify(m map[string]entry, target Endpoint) VerifySpec {
	v := VerifySpec{MaxBacklog: DefaultMaxBacklog}
	e, ok := m["verify"]
	if !ok {
		return v
	}
	vm, ok := p.mapping(e.val, "verify", verifyKeys, "verify field")
	if !ok {
		return v
	}
	if x, ok := vm["settle"]; ok {
		n := deref(x.val)
		d, err := time.ParseDuration(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil || d < 0 {
			p.add(n, "verify.settle", ErrInvalidValue, "must be a duration such as 5s or 1m30s, not negative; got %q", n.Value)
		}
		v.Settle = d
	}
	v.Rate = p.number(vm, "rate", "documents per second")
	v.SampleRate = p.number(vm, "sample_rate", "documents per second")
	v.MismatchBudget = p.count(vm, "mismatch_budget", "a count of confirmed mismatches", v.MismatchBudget)
	v.MaxBacklog = p.count(vm, "max_backlog", "a count of keys", v.MaxBacklog)
	if x, ok := vm["invariants"]; ok {
		v.Invariants = p.invariants(x)
	}
	v.Plan = p.oneOf(vm, "plan", "verify", e.key, verifyPlans, false, "plan")
	if v.Plan == "merge" && target.Kind == StoreDynamoDB {
		p.add(deref(vm["plan"].val), "verify.plan", ErrInvalidValue, "merge reads two MongoDB collections in key order; a DynamoDB table has none: use join or lookup")
	}
	v.SpillDir, _ = p.text(vm, "spill_dir", "verify", e.key, false)
	if x, ok := vm["indexes"]; ok {
		v.Indexes = p.indexList(x, "verify.indexes")
		if target.Kind == StoreDynamoDB {
			for i, ix := range v.Indexes {
				if ix.Name == "" {
					p.add(x.key, fmt.Sprintf("verify.indexes[%d].name", i), ErrRequired, "a DynamoDB global secondary index needs its name")
				}
				if len(ix.Keys) > 2 {
					p.add(x.key, fmt.Sprintf("verify.indexes[%d].keys", i), ErrInvalidValue, "a DynamoDB index has a partition key and at most a sort key; got %d keys", len(ix.Keys))
				}
			}
		}
	}
	return v
}

// number returns the optional non-negative number at m[key] (0 when absent).
func (p *parser) number(m map[string]entry, key, what string) float64 {
	e, ok := m[key]
	if !ok {
		return 0
	}
	n := deref(e.val)
	f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64)
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || err != nil ||
		f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		p.add(n, "verify."+key, ErrInvalidValue, "must be a number (%s) of 0 or more; got %q", what, n.Value)
		return 0
	}
	return f
}

// count returns the optional whole non-negative number at m[key], def when absent.
func (p *parser) count(m map[string]entry, key, what string, def int64) int64 {
	e, ok := m[key]
	if !ok {
		return def
	}
	n := deref(e.val)
	i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 10, 64)
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || err != nil || i < 0 {
		p.add(n, "verify."+key, ErrInvalidValue, "must be a whole number (%s) of 0 or more; got %q", what, n.Value)
		return def
	}
	return i
}

// invariants parses and compiles the invariants list; an expression that does not compile or
// is not boolean is reported at its own line.
func (p *parser) invariants(e entry) []Invariant {
	seq := deref(e.val)
	if seq.Kind != yaml.SequenceNode {
		p.add(seq, "verify.invariants", ErrInvalidValue, "must be a list of {name, expr}")
		return nil
	}
	var out []Invariant
	names := map[string]bool{}
	for i, item := range seq.Content {
		path := fmt.Sprintf("verify.invariants[%d]", i)
		im, ok := p.mapping(item, path, []string{"name", "expr"}, "invariant field")
		if !ok {
			continue
		}
		at := deref(item)
		name, nn := p.text(im, "name", path, at, false)
		if name == "" {
			name = path
		} else if names[name] {
			p.add(nn, path+".name", ErrDuplicateKey, "invariant name %q appears twice", name)
		}
		names[name] = true
		expr, en := p.textEnv(im, "expr", path, at, true, false)
		if expr == "" {
			continue
		}
		prg, err := compileInvariant(expr)
		if err != nil {
			p.add(en, path+".expr", ErrCEL, "invariant %s: %v", name, err)
			continue
		}
		out = append(out, Invariant{Name: name, Expr: expr, Line: en.Line, prg: prg})
	}
	return out
}

// compileInvariant compiles a CEL expression that must give a bool.
func compileInvariant(expr string) (*celProgram, error) {
	prg, err := compileCEL(expr)
	if err != nil {
		return nil, err
	}
	env, _ := celEnv()
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, iss.Err()
	}
	if t := ast.OutputType(); !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
		return nil, fmt.Errorf("gives %s, want bool", t)
	}
	return prg, nil
}
