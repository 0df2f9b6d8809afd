package main

import (
	"github.com/spf13/cobra"
)

// addCompletionCmd adds cobra's "completion bash|zsh|fish|powershell" now rather than when
// the command runs, so that it is in the command tree like every other command (its help,
// usage errors and the exit-status test), and makes "tandem completion" without a shell a
// usage error like "tandem flags" without a subcommand.
func addCompletionCmd(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() != "completion" {
			continue
		}
		c.Long += `
For example, for the current bash shell:
  source <(tandem completion bash)
Arguments complete from the admin API when it answers (--admin or $` + envAdminURL + `, the
token from $` + envAdminToken + ` or --token-file): migration names, phases, flag names.`
		c.RunE = func(*cobra.Command, []string) error {
			return usagef("completion needs a shell: bash, zsh, fish or powershell")
		}
	}
}
