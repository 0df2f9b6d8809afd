package transform

import (
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// Diff lists the paths at which want (what the new store should hold) and got (what it holds)
// differ, one line each: "profile.age: want int64 18, got int32 18", "status: missing (want …)",
// "extra: unexpected …", "tags.2: …" (arrays of equal length are compared element by element).
// It is empty exactly when Equal(want, got).
func Diff(want, got bson.D) []string {
	var out []string
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

func diffDocs(prefix string, want, got bson.D, out *[]string) {
	index := make(map[string]any, len(got))
	for _, e := range got {
		index[e.Key] = e.Value
	}
	seen := make(map[string]bool, len(want))
	for _, e := range want {
		seen[e.Key] = true
		g, ok := index[e.Key]
		if !ok {
			*out = append(*out, fmt.Sprintf("%s: missing (want %s)", prefix+e.Key, render(e.Value)))
			continue
		}
		diffValues(prefix+e.Key, e.Value, g, out)
	}
	for _, e := range got {
		if !seen[e.Key] {
			*out = append(*out, fmt.Sprintf("%s: unexpected %s", prefix+e.Key, render(e.Value)))
		}
	}
}

func diffValues(path string, want, got any, out *[]string) {
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
		*out = append(*out, fmt.Sprintf("%s: want %s, got %s", path, render(want), render(got)))
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
