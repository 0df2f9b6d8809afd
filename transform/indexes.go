package transform

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// Index is a secondary index of a MongoDB target collection, listed in the spec's `indexes:`
// section. The backfill creates them when it creates the target (and adds any missing ones to
// a target that exists); nothing else reads them.
type Index struct {
	// Name is the index name; empty lets the server choose (field_1_other_-1).
	Name string
	// Keys are the indexed fields of the target's documents, in order: dotted paths, each
	// ascending (1) or descending (-1).
	Keys []IndexKey
	// Unique and Sparse are MongoDB's index options of those names.
	Unique, Sparse bool
}

// IndexKey is one field of an index.
type IndexKey struct {
	Field string
	Order int32 // 1 or -1
}

// String renders the index as the spec would: {keys: {a: 1, b: -1}, unique: true}.
func (ix Index) String() string {
	keys := make([]string, len(ix.Keys))
	for i, k := range ix.Keys {
		keys[i] = fmt.Sprintf("%s: %d", k.Field, k.Order)
	}
	s := "{keys: {" + strings.Join(keys, ", ") + "}"
	if ix.Name != "" {
		s += ", name: " + ix.Name
	}
	if ix.Unique {
		s += ", unique: true"
	}
	if ix.Sparse {
		s += ", sparse: true"
	}
	return s + "}"
}

var indexNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,127}$`)

// indexes parses the optional `indexes:` list, which only a MongoDB target may have.
func (p *parser) indexes(m map[string]entry, target Endpoint) []Index {
	e, ok := m["indexes"]
	if !ok {
		return nil
	}
	if target.Kind == StoreDynamoDB {
		p.add(e.key, "indexes", ErrInvalidValue, "only for a mongodb target (a DynamoDB table's secondary indexes are not created by tandem)")
		return nil
	}
	return p.indexList(e, "indexes")
}

// indexList parses a list of indexes at e (the spec's `indexes:`, or verify's).
func (p *parser) indexList(e entry, list string) []Index {
	seq := deref(e.val)
	if seq.Kind != yaml.SequenceNode {
		p.add(seq, list, ErrInvalidValue, "must be a list of indexes")
		return nil
	}
	var out []Index
	names := map[string]int{}
	for i, item := range seq.Content {
		path := fmt.Sprintf("%s[%d]", list, i)
		im, ok := p.mapping(item, path, []string{"keys", "name", "unique", "sparse"}, "index field")
		if !ok {
			continue
		}
		at := deref(item)
		var ix Index
		var n *yaml.Node
		if ix.Name, n = p.text(im, "name", path, at, false); ix.Name != "" {
			if !indexNameRE.MatchString(ix.Name) {
				p.add(n, path+".name", ErrInvalidValue, "index name %q must match %s", ix.Name, indexNameRE)
			} else if j, dup := names[ix.Name]; dup {
				p.add(n, path+".name", ErrDuplicateKey, "index name %q is also %s[%d]'s", ix.Name, list, j)
			}
			names[ix.Name] = i
		}
		ix.Unique = p.boolean(im, "unique", path)
		ix.Sparse = p.boolean(im, "sparse", path)
		ix.Keys = p.indexKeys(im, path, at)
		if len(ix.Keys) > 0 {
			out = append(out, ix)
		}
	}
	return out
}

// indexKeys parses an index's keys: a mapping of field paths to 1 or -1, in order.
func (p *parser) indexKeys(im map[string]entry, path string, at *yaml.Node) []IndexKey {
	ke, ok := im["keys"]
	if !ok {
		p.add(at, path+".keys", ErrRequired, "required")
		return nil
	}
	kn := deref(ke.val)
	if kn.Kind != yaml.MappingNode || len(kn.Content) == 0 {
		p.add(kn, path+".keys", ErrInvalidValue, "must be a non-empty mapping of field to 1 or -1")
		return nil
	}
	var keys []IndexKey
	seen := map[string]bool{}
	for j := 0; j+1 < len(kn.Content); j += 2 {
		f, v := kn.Content[j], deref(kn.Content[j+1])
		where := path + ".keys." + f.Value
		if why := indexFieldProblem(f.Value); why != "" {
			p.add(f, where, ErrInvalidPath, "%q %s", f.Value, why)
			return nil
		}
		if seen[f.Value] {
			p.add(f, where, ErrDuplicateKey, "%q appears twice", f.Value)
			return nil
		}
		seen[f.Value] = true
		var order int32
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&order) != nil || (order != 1 && order != -1) {
			p.add(v, where, ErrInvalidValue, "must be 1 (ascending) or -1 (descending)")
			return nil
		}
		keys = append(keys, IndexKey{Field: f.Value, Order: order})
	}
	return keys
}

// indexFieldProblem says why name cannot be an indexed field path, or "".
func indexFieldProblem(name string) string {
	if name == "" {
		return "is empty"
	}
	for _, seg := range splitPath(name) {
		switch {
		case seg == "":
			return "has an empty segment"
		case strings.HasPrefix(seg, "$"):
			return "has a segment starting with $"
		case strings.ContainsRune(seg, 0):
			return "holds a NUL byte"
		}
	}
	return ""
}

// boolean returns the optional true/false at m[key].
func (p *parser) boolean(m map[string]entry, key, path string) bool {
	e, ok := m[key]
	if !ok {
		return false
	}
	v := deref(e.val)
	var b bool
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" || v.Decode(&b) != nil {
		p.add(v, join(path, key), ErrInvalidValue, "must be true or false")
		return false
	}
	return b
}
