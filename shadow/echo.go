package shadow

import (
	lru "github.com/hashicorp/golang-lru/v2"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/transform"
)

// DefaultEchoMemory is how many keys per direction an engine remembers its last write of.
const DefaultEchoMemory = 10000

// echoDocLimit is the largest document (BSON bytes) whose write the guard remembers: larger
// ones are not remembered, and their echoes are converged as any change is.
const echoDocLimit = 64 << 10

// echoGuard remembers, per direction, what this engine last wrote into the target for each key
// (nil for a delete). When both change streams run, a converge's write comes back on the
// other store's stream; converging that echo reads the store it was written to and writes the
// other one, and if the other store changed meanwhile (a later write whose own change the
// other tailer has not applied yet) the echo would land the older content over it — a write
// lost, not merely a ping-pong. So a converge whose source holds exactly what the other
// direction last wrote there skips (Action Echo): that content came from the target, which
// either still holds its origin or holds something newer that is on its way.
//
// The memory is this engine's: echoes of writes made by another process (another proxy's
// converges) are converged as usual. It is bounded (least recently used keys are forgotten,
// which only turns the guard off for them).
type echoGuard struct {
	wrote [2]*lru.Cache[string, echoEntry] // by the direction that wrote
}

type echoEntry struct {
	doc bson.D // nil: the write was a delete
}

func newEchoGuard(size int) *echoGuard {
	if size < 0 {
		return nil
	}
	if size == 0 {
		size = DefaultEchoMemory
	}
	g := &echoGuard{}
	for i := range g.wrote {
		g.wrote[i], _ = lru.New[string, echoEntry](size) // only a size <= 0 is an error
	}
	return g
}

// recorded notes what dir wrote into its target for ks (doc nil: a delete).
func (g *echoGuard) recorded(dir Direction, ks string, doc bson.D) {
	if g == nil {
		return
	}
	if doc != nil {
		if b, err := bson.Marshal(doc); err != nil || len(b) > echoDocLimit {
			g.wrote[dir].Remove(ks)
			return
		}
	}
	g.wrote[dir].Add(ks, echoEntry{doc: doc})
}

// echo reports whether src (the source document of a converge in dir, nil when absent) is
// exactly what the other direction last wrote into that store for ks.
func (g *echoGuard) echo(dir Direction, ks string, src bson.D) bool {
	if g == nil {
		return false
	}
	other := Forward
	if dir == Forward {
		other = Reverse
	}
	e, ok := g.wrote[other].Get(ks)
	if !ok {
		return false
	}
	same := e.doc == nil && src == nil || e.doc != nil && src != nil && transform.Equal(e.doc, src)
	if !same {
		// The store changed since that write: what it holds now is no echo, and neither
		// would be that content coming back later.
		g.wrote[other].Remove(ks)
	}
	return same
}
