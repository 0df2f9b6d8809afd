//go:build race

package backfill_test

import "time"

// raceEnabled: under the race detector the embedded FerretDB (pure-Go SQLite) is some 20 times
// slower, so the tests that copy many documents copy fewer.
const raceEnabled = true

// testLease is the tests' lease: longer than the catalog's slowest answer under the race
// detector.
const testLease = 5 * time.Second
