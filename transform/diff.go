package transform

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Diff lists the paths at which want (what the new store should hold) and got (what it holds)
// differ, one line each: "profile.age: want int64 18, got int32 18", "status: missing (want …)",
// "extra: unexpected …", "tags.2: …" (arrays of equal length are compared element by element).
// It is empty exactly when Equal(want, got). It is FieldDiffs, rendered.
func Diff(want, got bson.D) []string {
	fds := FieldDiffs(want, got)
	if fds == nil {
		return nil
	}
	out := make([]string, len(fds))
	for i, d := range fds {
		out[i] = d.String()
	}
	return out
}

// FieldDiff is one path at which two documents differ. WantAbsent means want has no such
// field (got has one more), GotAbsent that got lacks it.
type FieldDiff struct {
	Path                  string
	Want, Got             any
	WantAbsent, GotAbsent bool
}

// String renders the difference as a line of Diff (values included: it is user data).
func (d FieldDiff) String() string {
	switch {
	case d.GotAbsent:
		return fmt.Sprintf("%s: missing (want %s)", d.Path, render(d.Want))
	case d.WantAbsent:
		return fmt.Sprintf("%s: unexpected %s", d.Path, render(d.Got))
	}
	return fmt.Sprintf("%s: want %s, got %s", d.Path, render(d.Want), render(d.Got))
}

// FieldDiffs lists the paths at which want and got differ, as Diff does, with the values.
func FieldDiffs(want, got bson.D) []FieldDiff {
	var out []FieldDiff
	diffDocs("", want, got, &out)
	return out
}

// DiffPaths returns the paths of Diff's lines ("profile.age", "status"), without the values,
// which are user data: what a log line at info level and above may show of a difference.
// A line that names no path (a verifier's "missing in the new store") is kept whole.
func DiffPaths(diff []string) []string {
	out := make([]string, len(diff))
	for i, l := range diff {
		if j := strings.Index(l, ": "); j >= 0 {
			l = l[:j]
		}
		out[i] = l
	}
	return out
}

func diffDocs(prefix string, want, got bson.D, out *[]FieldDiff) {
	index := make(map[string]any, len(got))
	for _, e := range got {
		index[e.Key] = e.Value
	}
	seen := make(map[string]bool, len(want))
	for _, e := range want {
		seen[e.Key] = true
		g, ok := index[e.Key]
		if !ok {
			*out = append(*out, FieldDiff{Path: prefix + e.Key, Want: e.Value, GotAbsent: true})
			continue
		}
		diffValues(prefix+e.Key, e.Value, g, out)
	}
	for _, e := range got {
		if !seen[e.Key] {
			*out = append(*out, FieldDiff{Path: prefix + e.Key, Got: e.Value, WantAbsent: true})
		}
	}
}

func diffValues(path string, want, got any, out *[]FieldDiff) {
	if wd, ok := want.(bson.D); ok {
		if gd, ok := got.(bson.D); ok {
			diffDocs(path+".", wd, gd, out)
			return
		}
	}
	if wa, ok := want.(bson.A); ok {
		if ga, ok := got.(bson.A); ok && len(wa) == len(ga) {
			for i := range wa {
				diffValues(fmt.Sprintf("%s.%d", path, i), wa[i], ga[i], out)
			}
			return
		}
	}
	if !Equal(bson.D{{Key: "v", Value: want}}, bson.D{{Key: "v", Value: got}}) {
		*out = append(*out, FieldDiff{Path: path, Want: want, Got: got})
	}
}

// render shows a value with its BSON type, shortened to 60 characters.
func render(v any) string {
	s := fmt.Sprintf("%v", v)
	if b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, true, false); err == nil {
		s = string(b[len(`{"v":`) : len(b)-1])
	}
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return fmt.Sprintf("%T %s", v, s)
}
