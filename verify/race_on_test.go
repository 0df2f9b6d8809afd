//go:build race

package verify_test

import "time"

// raceEnabled: under the race detector the embedded FerretDB is many times slower, so the
// crash tests verify fewer documents.
const raceEnabled = true

// testLease is the crash tests' task lease: longer than the catalog's slowest answer under
// the race detector.
const testLease = 5 * time.Second
