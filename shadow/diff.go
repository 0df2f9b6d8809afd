package shadow

import (
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/transform"
)

// Diff lists the paths at which want and got differ, one line each ("profile.age: int32 18 !=
// int64 18", "status: missing", "extra: unexpected"), descending into nested documents. It is
// empty exactly when transform.Equal(want, got).
func Diff(want, got bson.D) []string {
	var out []string
	diffDocs("", want, got, &out)
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
		path := prefix + e.Key
		g, ok := index[e.Key]
		if !ok {
			*out = append(*out, fmt.Sprintf("%s: missing (want %s)", path, render(e.Value)))
			continue
		}
		wd, wok := e.Value.(bson.D)
		gd, gok := g.(bson.D)
		if wok && gok {
			diffDocs(path+".", wd, gd, out)
			continue
		}
		if !transform.Equal(bson.D{{Key: "v", Value: e.Value}}, bson.D{{Key: "v", Value: g}}) {
			*out = append(*out, fmt.Sprintf("%s: want %s, got %s", path, render(e.Value), render(g)))
		}
	}
	for _, e := range got {
		if !seen[e.Key] {
			*out = append(*out, fmt.Sprintf("%s: unexpected %s", prefix+e.Key, render(e.Value)))
		}
	}
}

// render shows a value with its BSON type, shortened to 60 characters.
func render(v any) string {
	b, err := bson.MarshalExtJSON(bson.D{{Key: "v", Value: v}}, true, false)
	s := fmt.Sprintf("%v", v)
	if err == nil {
		s = string(b[len(`{"v":`) : len(b)-1])
	}
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return fmt.Sprintf("%T %s", v, s)
}
