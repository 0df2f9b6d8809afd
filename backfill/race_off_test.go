//go:build !race

package backfill_test

import "time"

const raceEnabled = false

// testLease is the tests' lease.
const testLease = 2 * time.Second
