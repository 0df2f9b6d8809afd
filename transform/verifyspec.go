package transform

import (
	"strconv"

	"gopkg.in/yaml.v3"
)

// VerifyConfig is the spec's optional `verify:` section: what a verification of the migration
// must meet. Every field is optional.
type VerifyConfig struct {
	// MismatchBudget is how many confirmed mismatches a verification may leave and still pass
	// the release report's verdict (`verify: {mismatch_budget: N}`, a whole number, 0 or
	// more). Default 0: none.
	MismatchBudget int64
}

// verifyKeys are the keys of the verify section this parser knows.
var verifyKeys = []string{"mismatch_budget"}

// verify parses the optional `verify:` section.
func (p *parser) verify(m map[string]entry) VerifyConfig {
	var vc VerifyConfig
	e, ok := m["verify"]
	if !ok {
		return vc
	}
	vm, ok := p.mapping(e.val, "verify", verifyKeys, "verify field")
	if !ok {
		return vc
	}
	if b, ok := vm["mismatch_budget"]; ok {
		vc.MismatchBudget = p.budget(b.val)
	}
	return vc
}

// budget reads a mismatch budget: a whole number, 0 or more, written as a YAML integer.
func (p *parser) budget(n *yaml.Node) int64 {
	const path = "verify.mismatch_budget"
	v := deref(n)
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" {
		p.add(v, path, ErrInvalidValue, "%q is not a number: want a whole number of mismatches, 0 or more", v.Value)
		return 0
	}
	i, err := strconv.ParseInt(v.Value, 0, 64)
	if err != nil {
		p.add(v, path, ErrInvalidValue, "%q: want a whole number of mismatches, 0 or more", v.Value)
		return 0
	}
	if i < 0 {
		p.add(v, path, ErrInvalidValue, "%d is negative: want 0 or more", i)
		return 0
	}
	return i
}
