//go:build !unix

// Package cputime reads the CPU time the current process has used, so that benchmarks on a
// shared, noisy machine can report CPU per operation next to wall-clock latency: CPU time is
// far less sensitive than wall time to what other processes on the machine are doing.
package cputime

import "time"

// Process returns the user plus system CPU time the process has used so far, and false where
// the platform does not report it.
func Process() (time.Duration, bool) { return 0, false }
