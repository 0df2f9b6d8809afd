package verify

import "github.com/tandemdb/tandem/adapters"

// Pass names the store a scan reads, for the hooks below.
type Pass = pass

// The two passes of a run.
const (
	PassOld = passOld
	PassNew = passNew
)

// SetAfterRead makes a run call fn with the keys of each batch a scan read, before the other
// store is read for them: the point at which a concurrent write makes the comparison see a
// difference that is none. Tests use it to interleave writes with a run without timing.
func SetAfterRead(c *Config, fn func(p Pass, keys []adapters.Key)) { c.afterRead = fn }

// SetBeforeRecheck makes a run call fn with the keys it is about to recheck.
func SetBeforeRecheck(c *Config, fn func(keys []adapters.Key)) { c.beforeRecheck = fn }

// SetAfterBatch makes a run call fn after each checkpoint of a scan: the crash test's
// signal that the child is verifying.
func SetAfterBatch(c *Config, fn func()) { c.afterBatch = fn }

// CompareKeys is compareKeys, for the merge's order test.
var CompareKeys = compareKeys
