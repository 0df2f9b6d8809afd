package transform

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"gopkg.in/yaml.v3"
)

// Parse parses and validates a spec, expanding its ${NAME} references from the environment
// (see WithLookupEnv). filename only labels errors. On any problem it returns SpecErrors holding
// every problem found, not just the first; the spec is then nil. No error holds a credential.
func Parse(filename string, data []byte, opts ...ParseOption) (*Spec, error) {
	cfg := newParseConfig(opts)
	s := &Spec{File: filename}
	p := &parser{file: filename, aliasBudget: 1000, lookupEnv: cfg.lookupEnv}
	if root := p.document(data); root != nil {
		p.spec(root, s)
	}
	if len(p.errs) == 0 {
		if text, ok := redactSpecText(data); ok {
			sum := sha256.Sum256([]byte(text))
			s.redacted, s.Version = text, hex.EncodeToString(sum[:])[:16]
		} else {
			p.add(nil, "", ErrInvalidValue, "cannot remove the credentials from the spec's text; write them as ${NAME} references")
		}
	}
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool {
			a, b := p.errs[i], p.errs[j]
			return a.Line < b.Line || a.Line == b.Line && a.Column < b.Column
		})
		return nil, p.errs
	}
	return s, nil
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	tableRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{3,255}$`)
	regionRE  = regexp.MustCompile(`^[a-z0-9-]+$`)
	intRE     = regexp.MustCompile(`^[-+]?[0-9_]+$`)
	yamlErrRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// parser walks the YAML tree and collects every problem rather than stopping at the first.
type parser struct {
	file string
	errs SpecErrors
	// aliasBudget is how many more aliases constants may expand, against "billion laughs".
	aliasBudget int
	lookupEnv   func(string) (string, bool)
}

// entry is one key: value pair of a mapping.
type entry struct{ key, val *yaml.Node }

func (p *parser) add(at *yaml.Node, path string, sentinel error, format string, args ...any) {
	// Redacted in case a value from the environment, or a password, found its way in.
	e := &SpecError{File: p.file, Path: path, Msg: RedactText(fmt.Sprintf(format, args...)), Err: sentinel}
	if at != nil {
		e.Line, e.Column = at.Line, at.Column
	}
	p.errs = append(p.errs, e)
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// document decodes exactly one YAML document whose root is a mapping.
func (p *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(nil, "", ErrRequired, "empty spec")
		} else {
			p.syntax(err)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		p.add(&extra, "", ErrSyntax, "a second YAML document; a spec is one document")
	case !errors.Is(err, io.EOF):
		p.syntax(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = deref(root.Content[0])
	}
	if root.Kind != yaml.MappingNode {
		p.add(root, "", ErrInvalidValue, "a spec must be a mapping")
		return nil
	}
	return root
}

func (p *parser) syntax(err error) {
	e := &SpecError{File: p.file, Msg: RedactText(err.Error()), Err: ErrSyntax}
	if m := yamlErrRE.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Msg = RedactText(m[2])
	}
	p.errs = append(p.errs, e)
}

// mapping returns n's entries by key, reporting keys outside allowed (called a `what`, such as
// "key" or "step kind") and repeated keys. ok is false when n is not a mapping.
func (p *parser) mapping(n *yaml.Node, path string, allowed []string, what string) (m map[string]entry, ok bool) {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		p.add(n, path, ErrInvalidValue, "must be a mapping")
		return nil, false
	}
	m = make(map[string]entry, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case !slices.Contains(allowed, k.Value):
			p.add(k, join(path, k.Value), ErrUnknownKey, "unknown %s %q (want one of %s)", what, k.Value, strings.Join(allowed, ", "))
		case m[k.Value].key != nil:
			p.add(k, join(path, k.Value), ErrDuplicateKey, "%q appears twice (first at line %d)", k.Value, m[k.Value].key.Line)
		default:
			m[k.Value] = entry{key: k, val: v}
		}
	}
	return m, true
}

// text returns the string at m[key], its ${NAME} references expanded. A missing or empty
// required field is reported at `at` (the key that introduced the mapping); the returned node
// is where the value is, or `at`.
func (p *parser) text(m map[string]entry, key, path string, at *yaml.Node, required bool) (string, *yaml.Node) {
	return p.textEnv(m, key, path, at, required, true)
}

// textEnv is text; without expand, a ${NAME} reference is an error (the $${ escape still
// reads as ${).
func (p *parser) textEnv(m map[string]entry, key, path string, at *yaml.Node, required, expand bool) (string, *yaml.Node) {
	e, ok := m[key]
	if !ok {
		if required {
			p.add(at, join(path, key), ErrRequired, "required")
		}
		return "", at
	}
	v := deref(e.val)
	if v.Kind != yaml.ScalarNode {
		p.add(v, join(path, key), ErrInvalidValue, "must be a string")
		return "", v
	}
	if v.ShortTag() == "!!null" || v.Value == "" {
		if required {
			p.add(v, join(path, key), ErrRequired, "must not be empty")
		}
		return "", v
	}
	if !expand && hasEnvRef(v.Value) {
		p.add(v, join(path, key), ErrEnv, "${NAME} references are not expanded here; write $${ for a literal ${")
		return "", v
	}
	s, _ := p.expand(v, join(path, key))
	return s, v
}

// expand returns the string value of n with its references expanded; "" and false after
// reporting a reference it cannot expand.
func (p *parser) expand(n *yaml.Node, path string) (string, bool) {
	s, err := expandEnv(n.Value, p.lookupEnv)
	if err != nil {
		p.add(n, path, ErrEnv, "%v", err)
		return "", false
	}
	return s, true
}

// oneOf returns m[key], which must be one of allowed; "" when absent or not allowed.
func (p *parser) oneOf(m map[string]entry, key, path string, at *yaml.Node, allowed []string, required bool, what string) string {
	v, n := p.text(m, key, path, at, required)
	if v != "" && !slices.Contains(allowed, v) {
		p.add(n, join(path, key), ErrInvalidValue, "unknown %s %q (want one of %s)", what, v, strings.Join(allowed, ", "))
		return ""
	}
	return v
}

func (p *parser) spec(root *yaml.Node, s *Spec) {
	m, _ := p.mapping(root, "", []string{"name", "source", "target", "key", "indexes", "verify", "forward", "reverse"}, "key")

	var n *yaml.Node
	s.Name, n = p.text(m, "name", "", root, true)
	if s.Name != "" && !nameRE.MatchString(s.Name) {
		p.add(n, "name", ErrInvalidValue, "%q must match %s", s.Name, nameRE)
	}

	s.Source = p.endpoint(m, "source", root, []string{StoreMongoDB})
	s.Target = p.endpoint(m, "target", root, []string{StoreMongoDB, StoreDynamoDB})
	if s.Source.Kind == StoreMongoDB && s.Target.Kind == StoreMongoDB && s.Source == s.Target {
		p.add(m["target"].key, "target", ErrInvalidValue, "target is the source collection")
	}
	s.Key = p.key(m, root, s.Target)
	s.Indexes = p.indexes(m, s.Target)
	s.Verify = p.verify(m, s.Target)
	keys := []string{s.Key.Source, s.Key.Target, s.Key.Partition, s.Key.SortAttribute}

	forward, fwdOK := p.steps(m, "forward", root, true, keys)
	s.forward = forward
	if fwdOK {
		p.conflicts("forward", forward)
	}
	if _, explicit := m["reverse"]; explicit {
		var revOK bool
		if s.reverse, revOK = p.steps(m, "reverse", root, false, keys); revOK {
			p.conflicts("reverse", s.reverse)
		}
		return
	}
	if !fwdOK {
		return
	}
	for i, st := range forward {
		if why := st.irreversible(); why != "" {
			p.add(&yaml.Node{Line: st.line, Column: st.col}, fmt.Sprintf("forward[%d].%s", i, st.kind), ErrIrreversible,
				"%s %s is irreversible: %s; write an explicit reverse list", st.kind, st.summary(), why)
		}
	}
	if len(p.errs) == 0 {
		s.reverse = deriveReverse(forward)
		s.reverseDerived = true
	}
}

// endpoint parses source or target, which hold exactly one of kinds.
func (p *parser) endpoint(m map[string]entry, key string, root *yaml.Node, kinds []string) Endpoint {
	e, ok := m[key]
	if !ok {
		p.add(root, key, ErrRequired, "required")
		return Endpoint{}
	}
	before := len(p.errs)
	em, ok := p.mapping(e.val, key, kinds, "key")
	if !ok {
		return Endpoint{}
	}
	if len(em) == 0 && len(p.errs) > before {
		return Endpoint{} // only unknown keys, reported already
	}
	var present []string
	for _, k := range kinds {
		if _, ok := em[k]; ok {
			present = append(present, k)
		}
	}
	switch {
	case len(present) == 0 && len(kinds) == 1:
		p.add(e.key, join(key, kinds[0]), ErrRequired, "required")
		return Endpoint{}
	case len(present) == 0:
		p.add(e.key, key, ErrInvalidValue, "needs exactly one of %s; has neither", strings.Join(kinds, ", "))
		return Endpoint{}
	case len(present) > 1:
		p.add(e.key, key, ErrInvalidValue, "needs exactly one of %s; has both", strings.Join(kinds, ", "))
		return Endpoint{}
	}
	kind := present[0]
	path := join(key, kind)
	at := em[kind].key
	if kind == StoreMongoDB {
		fm, ok := p.mapping(em[kind].val, path, []string{"uri", "database", "collection"}, "key")
		if !ok {
			return Endpoint{}
		}
		ep := Endpoint{Kind: kind}
		var n *yaml.Node
		if ep.URI, n = p.text(fm, "uri", path, at, true); ep.URI != "" &&
			!strings.HasPrefix(ep.URI, "mongodb://") && !strings.HasPrefix(ep.URI, "mongodb+srv://") {
			p.add(n, join(path, "uri"), ErrInvalidValue, "must start with mongodb:// or mongodb+srv://")
		}
		if ep.Database, n = p.text(fm, "database", path, at, true); strings.ContainsAny(ep.Database, "/\\. \"$\x00") {
			p.add(n, join(path, "database"), ErrInvalidValue, "database name %q holds one of / \\ . space \" $", ep.Database)
		}
		if ep.Collection, n = p.text(fm, "collection", path, at, true); strings.ContainsAny(ep.Collection, "$\x00") ||
			strings.HasPrefix(ep.Collection, "system.") {
			p.add(n, join(path, "collection"), ErrInvalidValue, "collection name %q holds $ or starts with system.", ep.Collection)
		}
		return ep
	}
	fm, ok := p.mapping(em[kind].val, path, []string{"table", "region", "endpoint"}, "key")
	if !ok {
		return Endpoint{}
	}
	ep := Endpoint{Kind: kind}
	var n *yaml.Node
	if ep.Table, n = p.text(fm, "table", path, at, true); ep.Table != "" && !tableRE.MatchString(ep.Table) {
		p.add(n, join(path, "table"), ErrInvalidValue, "table name %q must match %s", ep.Table, tableRE)
	}
	if ep.Region, n = p.text(fm, "region", path, at, true); ep.Region != "" && !regionRE.MatchString(ep.Region) {
		p.add(n, join(path, "region"), ErrInvalidValue, "region %q must match %s", ep.Region, regionRE)
	}
	if ep.EndpointURL, n = p.text(fm, "endpoint", path, at, false); ep.EndpointURL != "" {
		if u, err := url.Parse(ep.EndpointURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			p.add(n, join(path, "endpoint"), ErrInvalidValue, "endpoint %q must be an http:// or https:// URL", RedactURI(ep.EndpointURL))
		}
	}
	return ep
}

// fieldNameProblem says why name cannot be a top-level field holding a key, or "".
func fieldNameProblem(name string) string {
	switch {
	case strings.Contains(name, "."):
		return "must be a top-level field (no dots)"
	case strings.HasPrefix(name, "$"):
		return "must not start with $"
	case strings.ContainsRune(name, 0):
		return "must not hold a NUL byte"
	}
	return ""
}

func (p *parser) key(m map[string]entry, root *yaml.Node, target Endpoint) Key {
	k := Key{Source: "_id"}
	if target.Kind == StoreMongoDB {
		k.Target = "_id"
	}
	e, ok := m["key"]
	if !ok {
		if target.Kind == StoreDynamoDB {
			p.add(m["target"].key, "key.partition", ErrRequired, "required for a dynamodb target")
		}
		return k
	}
	km, ok := p.mapping(e.val, "key", []string{"source", "target", "partition", "sort"}, "key")
	if !ok {
		return k
	}
	field := func(name string) (string, bool) {
		if _, ok := km[name]; !ok {
			return "", false
		}
		v, n := p.text(km, name, "key", e.key, true)
		if v == "" {
			return "", false
		}
		if why := fieldNameProblem(v); why != "" {
			p.add(n, "key."+name, ErrInvalidValue, "%q %s", v, why)
			return "", false
		}
		return v, true
	}
	if v, ok := field("source"); ok {
		k.Source = v
	}
	onlyFor := func(name, kind string) {
		if f, ok := km[name]; ok && target.Kind != "" && target.Kind != kind {
			p.add(f.key, "key."+name, ErrInvalidValue, "only for a %s target", kind)
		}
	}
	onlyFor("target", StoreMongoDB)
	onlyFor("partition", StoreDynamoDB)
	onlyFor("sort", StoreDynamoDB)
	switch target.Kind {
	case StoreMongoDB:
		if v, ok := field("target"); ok {
			k.Target = v
		}
	case StoreDynamoDB:
		if _, ok := km["partition"]; !ok {
			p.add(e.key, "key.partition", ErrRequired, "required for a dynamodb target")
		}
		k.Partition, _ = field("partition")
		if s, ok := km["sort"]; ok {
			p.sortKey(s, &k)
		}
	}
	return k
}

func (p *parser) sortKey(e entry, k *Key) {
	sm, ok := p.mapping(e.val, "key.sort", []string{"attribute", "value"}, "key")
	if !ok {
		return
	}
	attr, n := p.text(sm, "attribute", "key.sort", e.key, true)
	if why := fieldNameProblem(attr); why != "" {
		p.add(n, "key.sort.attribute", ErrInvalidValue, "%q %s", attr, why)
		return
	}
	if attr != "" && (attr == k.Partition || attr == k.Source) {
		p.add(n, "key.sort.attribute", ErrInvalidValue, "%q must differ from the partition attribute and key.source", attr)
		return
	}
	ve, ok := sm["value"]
	if !ok {
		p.add(e.key, "key.sort.value", ErrRequired, "required")
		return
	}
	v, ok := p.constant(ve.val, "key.sort.value")
	if !ok {
		return
	}
	switch v.(type) {
	case string, int32, int64, float64:
	default:
		p.add(deref(ve.val), "key.sort.value", ErrInvalidValue, "must be a string or a number")
		return
	}
	k.SortAttribute, k.SortValue = attr, v
}

// steps parses a step list; ok is false when the list is missing or any step is invalid.
func (p *parser) steps(m map[string]entry, name string, root *yaml.Node, required bool, keys []string) (steps []*step, ok bool) {
	e, present := m[name]
	if !present {
		if required {
			p.add(root, name, ErrRequired, "required")
		}
		return nil, false
	}
	seq := deref(e.val)
	if seq.Kind != yaml.SequenceNode {
		p.add(seq, name, ErrInvalidValue, "must be a list of steps")
		return nil, false
	}
	if required && len(seq.Content) == 0 {
		p.add(e.key, name, ErrRequired, "needs at least one step")
		return nil, false
	}
	ok = true
	for i, item := range seq.Content {
		path := fmt.Sprintf("%s[%d]", name, i)
		before := len(p.errs)
		sm, isMap := p.mapping(item, path, stepKinds, "step kind")
		if !isMap {
			ok = false
			continue
		}
		var kinds []string
		for _, k := range stepKinds {
			if _, has := sm[k]; has {
				kinds = append(kinds, k)
			}
		}
		switch {
		case len(kinds) == 0:
			if len(p.errs) == before {
				p.add(deref(item), path, ErrStepKind, "step has no kind (want one of %s)", strings.Join(stepKinds, ", "))
			}
			ok = false
			continue
		case len(kinds) > 1:
			p.add(deref(item), path, ErrStepKind, "step has %d kinds (%s); want exactly one", len(kinds), strings.Join(kinds, ", "))
			ok = false
			continue
		}
		st := p.step(kinds[0], sm[kinds[0]], path+"."+kinds[0], keys)
		if st == nil || len(p.errs) > before {
			ok = false
			continue
		}
		steps = append(steps, st)
	}
	return steps, ok
}

var stepFields = map[string][]string{
	KindRename:  {"from", "to"},
	KindMove:    {"from", "to"},
	KindDrop:    {"path"},
	KindSet:     {"path", "value"},
	KindDefault: {"path", "value"},
	KindConvert: {"path", "from", "to", "on_error", "default"},
	KindCompute: {"path", "expr"},
}

// step parses one step's body; nil when it has a problem (already reported).
func (p *parser) step(kind string, e entry, path string, keys []string) *step {
	before := len(p.errs)
	st := &step{kind: kind, line: e.key.Line, col: e.key.Column}
	bm, ok := p.mapping(e.val, path, stepFields[kind], "field")
	if !ok {
		return nil
	}
	switch kind {
	case KindRename, KindMove:
		st.from = p.path(bm, "from", path, e.key, keys)
		st.path = p.path(bm, "to", path, e.key, keys)
		if st.from != nil && st.path != nil {
			from, to := strings.Join(st.from, "."), strings.Join(st.path, ".")
			switch {
			case from == to:
				p.add(bm["to"].val, path+".to", ErrInvalidPath, "to is the same as from")
			case strings.HasPrefix(to, from+"."):
				p.add(bm["to"].val, path+".to", ErrInvalidPath, "%q is inside from %q", to, from)
			case strings.HasPrefix(from, to+"."):
				p.add(bm["to"].val, path+".to", ErrInvalidPath, "from %q is inside %q", from, to)
			}
		}
	case KindDrop:
		st.path = p.path(bm, "path", path, e.key, keys)
	case KindSet, KindDefault:
		st.path = p.path(bm, "path", path, e.key, keys)
		if v, ok := bm["value"]; ok {
			st.value, _ = p.constant(v.val, path+".value")
		} else {
			p.add(e.key, path+".value", ErrRequired, "required")
		}
	case KindConvert:
		p.convertStep(st, bm, e, path, keys)
	case KindCompute:
		st.path = p.path(bm, "path", path, e.key, keys)
		expr, n := p.textEnv(bm, "expr", path, e.key, true, false)
		if expr != "" {
			prog, err := compileCEL(expr)
			if err != nil {
				p.add(n, path+".expr", ErrCEL, "%v", err)
			}
			st.expr, st.prog = expr, prog
		}
	}
	if len(p.errs) > before {
		return nil
	}
	wkey := "path"
	if kind == KindRename || kind == KindMove {
		wkey = "to"
	}
	if n := deref(bm[wkey].val); n != nil {
		st.wline, st.wcol = n.Line, n.Column
	}
	return st
}

func (p *parser) convertStep(st *step, bm map[string]entry, e entry, path string, keys []string) {
	st.path = p.path(bm, "path", path, e.key, keys)
	st.convTo = p.oneOf(bm, "to", path, e.key, Types, true, "type")
	st.convFrom = p.oneOf(bm, "from", path, e.key, Types, false, "type")
	if st.convFrom != "" && st.convTo != "" {
		at := deref(bm["from"].val)
		switch {
		case st.convFrom == st.convTo:
			p.add(at, path+".from", ErrInvalidValue, "from and to are both %s", st.convTo)
		case !canConvert(st.convFrom, st.convTo):
			var to []string
			for _, t := range Types {
				if canConvert(st.convFrom, t) {
					to = append(to, t)
				}
			}
			p.add(at, path+".to", ErrInvalidValue, "cannot convert %s to %s (%s converts to %s)",
				st.convFrom, st.convTo, st.convFrom, strings.Join(to, ", "))
		}
	}
	// An unquoted `on_error: null` is YAML's null, not the string: it still means the null policy.
	if oe, ok := bm["on_error"]; ok && deref(oe.val).ShortTag() == "!!null" && strings.EqualFold(deref(oe.val).Value, "null") {
		st.onError = OnErrorNull
	} else if st.onError = p.oneOf(bm, "on_error", path, e.key, onErrorPolicies, false, "on_error policy"); st.onError == "" {
		st.onError = OnErrorFail
	}
	def, hasDef := bm["default"]
	switch {
	case st.onError == OnErrorDefault && !hasDef:
		p.add(e.key, path+".default", ErrRequired, "required with on_error: default")
	case st.onError != OnErrorDefault && hasDef:
		p.add(def.key, path+".default", ErrInvalidValue, "only allowed with on_error: default")
	case hasDef:
		st.onErrorDef, _ = p.constant(def.val, path+".default")
	}
}

// path parses a dotted path at m[key]: non-empty segments, none starting with $, and none
// reaching into a key field (keys holds the key field names; empty ones are ignored).
func (p *parser) path(m map[string]entry, key, parent string, at *yaml.Node, keys []string) []string {
	s, n := p.text(m, key, parent, at, true)
	if s == "" {
		return nil
	}
	where := join(parent, key)
	segs := splitPath(s)
	for _, seg := range segs {
		switch {
		case seg == "":
			p.add(n, where, ErrInvalidPath, "%q has an empty segment", s)
			return nil
		case strings.HasPrefix(seg, "$"):
			p.add(n, where, ErrInvalidPath, "%q has a segment starting with $", s)
			return nil
		case strings.ContainsRune(seg, 0):
			p.add(n, where, ErrInvalidPath, "%q holds a NUL byte", s)
			return nil
		}
	}
	for _, k := range keys {
		if k != "" && segs[0] == k {
			p.add(n, where, ErrInvalidPath, "%q touches the key field %q, which only the key settings move", s, k)
			return nil
		}
	}
	return segs
}

// constant converts a YAML value to BSON: integers become int32 when they fit and int64
// otherwise, floats double, mappings documents in their YAML order, sequences arrays. Strings
// that look like timestamps stay strings.
func (p *parser) constant(n *yaml.Node, path string) (any, bool) {
	return p.constantAt(n, path, path, 0)
}

// maxConstantDepth bounds the nesting of a constant, which also stops an alias that refers to
// a mapping holding it.
const maxConstantDepth = 64

// constantAt converts n, found at path inside the constant at top, depth levels down.
func (p *parser) constantAt(n *yaml.Node, top, path string, depth int) (any, bool) {
	if n.Kind == yaml.AliasNode {
		p.aliasBudget--
	}
	if depth > maxConstantDepth || p.aliasBudget < 0 {
		p.add(n, top, ErrInvalidValue, "value nested deeper than %d levels, or aliases expand too far", maxConstantDepth)
		return nil, false
	}
	n = deref(n)
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return nil, true
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err == nil {
				return b, true
			}
		case "!!int":
			var i int64
			if err := n.Decode(&i); err != nil {
				p.add(n, path, ErrInvalidValue, "integer %s does not fit int64", n.Value)
				return nil, false
			}
			if i >= math.MinInt32 && i <= math.MaxInt32 {
				return int32(i), true
			}
			return i, true
		case "!!float":
			if intRE.MatchString(n.Value) { // YAML reads an integer beyond uint64 as a float
				p.add(n, path, ErrInvalidValue, "integer %s does not fit int64", n.Value)
				return nil, false
			}
			var f float64
			if err := n.Decode(&f); err == nil {
				return f, true
			}
		case "!!str":
			return p.expand(n, path)
		case "!!timestamp":
			return n.Value, true
		case "!!binary":
			var s string
			if err := n.Decode(&s); err == nil {
				return bson.Binary{Subtype: bson.TypeBinaryGeneric, Data: []byte(s)}, true
			}
		}
		p.add(n, path, ErrInvalidValue, "cannot use %s %q as a value", n.ShortTag(), n.Value)
		return nil, false
	case yaml.SequenceNode:
		a := make(bson.A, 0, len(n.Content))
		ok := true
		for i, c := range n.Content {
			v, vok := p.constantAt(c, top, fmt.Sprintf("%s[%d]", path, i), depth+1)
			ok = ok && vok
			a = append(a, v)
		}
		return a, ok
	case yaml.MappingNode:
		d := make(bson.D, 0, len(n.Content)/2)
		ok := true
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			kp := join(path, k.Value)
			switch {
			case k.Kind != yaml.ScalarNode || k.Value == "":
				p.add(k, kp, ErrInvalidValue, "field names must be non-empty strings")
				ok = false
				continue
			case strings.HasPrefix(k.Value, "$") || strings.Contains(k.Value, "."):
				p.add(k, kp, ErrInvalidValue, "field name %q must not start with $ or hold a dot", k.Value)
				ok = false
				continue
			case indexOf(d, k.Value) >= 0:
				p.add(k, kp, ErrDuplicateKey, "%q appears twice", k.Value)
				ok = false
				continue
			}
			v, vok := p.constantAt(n.Content[i+1], top, kp, depth+1)
			ok = ok && vok
			d = append(d, bson.E{Key: k.Value, Value: v})
		}
		return d, ok
	}
	p.add(n, path, ErrInvalidValue, "unsupported YAML value")
	return nil, false
}
