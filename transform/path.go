package transform

import (
	"errors"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Paths are pre-split dotted field names. Only bson.D values are documents a path walks into:
// a path never indexes into an array, and a bson.M or bson.Raw on the way counts as a
// non-document value.
//
// The functions below change a document in place, but only a top-level document the caller owns:
// every nested document on the way to a change is copied first, so the documents of the input
// are never written to. Unchanged nested values are shared between input and output.

// errAbsent is returned by update's callbacks when the field they look for is missing; callers
// turn it into a no-op.
var errAbsent = errors.New("absent")

// splitPath splits a dotted path; validation has made sure every segment is a field name.
func splitPath(p string) []string { return strings.Split(p, ".") }

// indexOf returns the position of the first field named key, or -1.
func indexOf(d bson.D, key string) int {
	for i := range d {
		if d[i].Key == key {
			return i
		}
	}
	return -1
}

// get returns the value at path, and false when a field on the way is missing or not a document.
func get(d bson.D, path []string) (any, bool) {
	for depth, seg := range path {
		i := indexOf(d, seg)
		if i < 0 {
			return nil, false
		}
		if depth == len(path)-1 {
			return d[i].Value, true
		}
		sub, ok := d[i].Value.(bson.D)
		if !ok {
			return nil, false
		}
		d = sub
	}
	return nil, false
}

// cloneD returns a shallow copy of d with room for one more field.
func cloneD(d bson.D) bson.D {
	c := make(bson.D, len(d), len(d)+1)
	copy(c, d)
	return c
}

// deleteAt removes field i of an owned document, keeping the order of the others.
func deleteAt(d bson.D, i int) bson.D {
	copy(d[i:], d[i+1:])
	d[len(d)-1] = bson.E{}
	return d[:len(d)-1]
}

// update calls fn with the document that holds path's last segment and that segment, copying
// every nested document on the way so that fn may change the one it gets. When create is set,
// missing documents on the way are created (and kept only if fn adds to them); otherwise a
// missing one makes update return errAbsent without calling fn. A nested document that fn leaves
// empty is removed from its parent, and so on upwards: see "Empty documents" in the package doc.
func update(d *bson.D, path []string, create bool, fn func(parent *bson.D, key string) error) error {
	return updateAt(d, path, 0, create, fn)
}

func updateAt(d *bson.D, path []string, depth int, create bool, fn func(*bson.D, string) error) error {
	if depth == len(path)-1 {
		return fn(d, path[depth])
	}
	key := path[depth]
	i := indexOf(*d, key)
	var sub bson.D
	switch {
	case i >= 0:
		s, ok := (*d)[i].Value.(bson.D)
		if !ok {
			if !create {
				return errAbsent
			}
			return fmt.Errorf("%w: %s is %s, not a document", ErrPathConflict,
				strings.Join(path[:depth+1], "."), typeName((*d)[i].Value))
		}
		sub = cloneD(s)
	case create:
		sub = make(bson.D, 0, 1)
	default:
		return errAbsent
	}
	if err := updateAt(&sub, path, depth+1, create, fn); err != nil {
		return err
	}
	switch {
	case i < 0:
		if len(sub) > 0 {
			*d = append(*d, bson.E{Key: key, Value: sub})
		}
	case len(sub) == 0:
		*d = deleteAt(*d, i)
	default:
		(*d)[i].Value = sub
	}
	return nil
}

// set stores v at path, replacing a present value in its position or appending a new field at
// the end of its document.
func set(d *bson.D, path []string, v any) error {
	return update(d, path, true, func(p *bson.D, key string) error {
		if i := indexOf(*p, key); i >= 0 {
			(*p)[i].Value = v
			return nil
		}
		*p = append(*p, bson.E{Key: key, Value: v})
		return nil
	})
}

// remove deletes the field at path and returns its value; found is false (and d unchanged)
// when there is none.
func remove(d *bson.D, path []string) (v any, found bool) {
	if _, ok := get(*d, path); !ok {
		return nil, false
	}
	err := update(d, path, false, func(p *bson.D, key string) error {
		i := indexOf(*p, key)
		v = (*p)[i].Value
		*p = deleteAt(*p, i)
		return nil
	})
	return v, err == nil
}

// rename moves the value at from to to. A missing from is a no-op; an existing to is a conflict.
// Within one document the field keeps its position and only changes its name; otherwise it is
// removed from its document and appended to the destination document.
func rename(d *bson.D, from, to []string) error {
	v, ok := get(*d, from)
	if !ok {
		return nil
	}
	if _, exists := get(*d, to); exists {
		return fmt.Errorf("%w: destination %s already exists", ErrPathConflict, strings.Join(to, "."))
	}
	if sameParent(from, to) {
		return update(d, from, false, func(p *bson.D, key string) error {
			(*p)[indexOf(*p, key)].Key = to[len(to)-1]
			return nil
		})
	}
	remove(d, from)
	return set(d, to, v)
}

func sameParent(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a)-1; i++ {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
