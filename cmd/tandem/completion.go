package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/flags"
	"github.com/tandemdb/tandem/report"
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
Migration names complete from the admin API when it answers within ` + completionTimeout.String() + ` (--admin or
$` + envAdminURL + `, the token from $` + envAdminToken + ` or --token-file); phases, flag names and
flag values complete without it.`
		c.RunE = func(*cobra.Command, []string) error {
			return usagef("completion needs a shell: bash, zsh, fish or powershell")
		}
	}
	_ = root.RegisterFlagCompletionFunc("log-level", fixedValues("debug", "info", "warn", "error"))
	_ = root.RegisterFlagCompletionFunc("log-format", fixedValues("text", "json"))
}

// completionTimeout bounds asking the admin API for candidates: the shell waits for them.
const completionTimeout = 1500 * time.Millisecond

// fixedValues completes a flag or an argument from a fixed list, and never with file names.
func fixedValues(values ...string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		return withPrefix(values, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// specFiles completes a SPEC argument with the YAML files (and the folders) of the shell.
func specFiles(_ *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return []cobra.Completion{"yaml", "yml"}, cobra.ShellCompDirectiveFilterFileExt
}

// migrations asks the admin API for the migrations, or returns nil when it does not answer
// within completionTimeout, refuses, or the flags are wrong: completion fails quietly.
func (o *adminOptions) migrations(cmd *cobra.Command) []admin.MigrationSummary {
	c, err := o.client(false)
	if err != nil {
		return nil
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	ms, err := c.Migrations(ctx)
	if err != nil {
		return nil
	}
	return ms
}

// phaseOf is the phase the admin API lists migration in, "" when unknown.
func (o *adminOptions) phaseOf(cmd *cobra.Command, migration string) string {
	for _, m := range o.migrations(cmd) {
		if m.Name == migration {
			return m.Phase
		}
	}
	return ""
}

// completeMigration completes the MIGRATION argument, the first of every admin command,
// with the names the admin API lists and their phases as descriptions; later arguments get
// no candidates unless next completes them.
func (o *adminOptions) completeMigration(next cobra.CompletionFunc) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			if next == nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return next(cmd, args, toComplete)
		}
		var out []cobra.Completion
		for _, m := range o.migrations(cmd) {
			if strings.HasPrefix(m.Name, toComplete) {
				out = append(out, cobra.CompletionWithDesc(m.Name, "phase "+m.Phase))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

// phaseTargets are the phases "tandem phase" moves to (flags.AdvanceTarget): the next one from
// current, or every one the command can move to when current is unknown.
func phaseTargets(current string) []string {
	if current != "" {
		if t := flags.AdvanceTarget(current); t != "" {
			return []string{t}
		}
		return nil
	}
	var out []string
	for _, p := range flags.Phases {
		if t := flags.AdvanceTarget(p); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// rollbackTargets are the phases "tandem rollback --to" goes back to: those before current,
// or all but the last when current is unknown.
func rollbackTargets(current string) []string {
	i := slices.Index(flags.Phases, current)
	if i < 0 {
		i = len(flags.Phases) - 1
	}
	return slices.Clone(flags.Phases[:i])
}

// completePhase completes "tandem phase MIGRATION PHASE": the next phase of the migration when
// the admin API says which it is in, else every phase the command takes.
func (o *adminOptions) completePhase(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) != 1 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	return withPrefix(phaseTargets(o.phaseOf(cmd, args[0])), toComplete), cobra.ShellCompDirectiveNoFileComp
}

// completeRollbackTo completes --to of "tandem rollback MIGRATION".
func (o *adminOptions) completeRollbackTo(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	current := ""
	if len(args) > 0 {
		current = o.phaseOf(cmd, args[0])
	}
	return withPrefix(rollbackTargets(current), toComplete), cobra.ShellCompDirectiveNoFileComp
}

// settableFlags are the flags "tandem flags set" changes, with the values each takes ("" for
// a number).
var settableFlags = []struct {
	name   string
	values []string
}{
	{flags.FlagReadSource, []string{flags.ReadOld, flags.ReadNew}},
	{flags.FlagShadowReadPercent, nil},
	{flags.FlagWriteBlock, []string{"true", "false"}},
}

// completeAssignment completes the FLAG=VALUE arguments of "tandem flags set MIGRATION": the
// flag names not given yet, each with its "=" (and no space after), then the flag's values.
func completeAssignment(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if name, _, ok := strings.Cut(toComplete, "="); ok {
		for _, f := range settableFlags {
			if f.name == name {
				var out []string
				for _, v := range f.values {
					out = append(out, name+"="+v)
				}
				return withPrefix(out, toComplete), cobra.ShellCompDirectiveNoFileComp
			}
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	given := map[string]bool{}
	for _, a := range args[1:] {
		name, _, _ := strings.Cut(a, "=")
		given[name] = true
	}
	var out []string
	for _, f := range settableFlags {
		if !given[f.name] {
			out = append(out, f.name+"=")
		}
	}
	return withPrefix(out, toComplete), cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveNoSpace
}

// reportFormats completes --format of "tandem report".
var reportFormats = fixedValues(report.Formats...)

func withPrefix(values []string, prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, v := range values {
		if strings.HasPrefix(v, prefix) {
			out = append(out, v)
		}
	}
	return out
}
