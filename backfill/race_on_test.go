//go:build race

package backfill_test

// raceEnabled: under the race detector the embedded FerretDB (pure-Go SQLite) is some 20 times
// slower, so the tests that copy many documents copy fewer.
const raceEnabled = true
