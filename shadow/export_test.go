package shadow

import "github.com/tandemdb/tandem/adapters"

// HoldKey locks key's lock stripe in e until release is called: every converge of the key
// waits meanwhile, and so does the Pool or Comparer worker running it. Tests use it to keep a
// worker busy without timing.
func HoldKey(e *Engine, key adapters.Key) (release func()) {
	m := &e.stripes[stripeOf(adapters.KeyString(key), len(e.stripes))]
	m.Lock()
	return m.Unlock
}
