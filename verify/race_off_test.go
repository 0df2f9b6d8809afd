//go:build !race

package verify_test

import "time"

const raceEnabled = false

const testLease = 2 * time.Second
