//go:build !race

package backfill_test

const raceEnabled = false
