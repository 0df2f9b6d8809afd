package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The values of --output: what a command prints as its result on stdout.
const (
	outputTable = "table" // text for people: lines and aligned tables (the default)
	outputJSON  = "json"  // JSON for machines: one document, or JSON lines where the command streams
)

// outputTextAlias is the older spelling of table, kept where --output text existed (backfill
// run, cdc resync) so that scripts written for it go on working.
const outputTextAlias = "text"

// outputFlag is the value of --output, one type for every command so that each checks it
// alike: an unknown value is refused by Set, which pflag reports as
// `invalid argument "xml" for "--output" flag: want table or json`, and the root's flag
// error function makes that a usage error (exit status 2).
type outputFlag struct {
	format    string
	textAlias bool // accept "text" for table
	set       bool // --output was given
	viaJSON   bool // the deprecated --json was given
}

func (f *outputFlag) String() string {
	if f.format == "" {
		return outputTable
	}
	return f.format
}

func (f *outputFlag) Type() string { return "table|json" }

func (f *outputFlag) Set(s string) error {
	v := strings.ToLower(strings.TrimSpace(s))
	if f.textAlias && v == outputTextAlias {
		v = outputTable
	}
	if v != outputTable && v != outputJSON {
		return fmt.Errorf("want %s", strings.Join(f.accepted(), " or "))
	}
	if f.viaJSON && v != outputJSON {
		return fmt.Errorf("--json (the older spelling of --output json) was given too: pass one of them")
	}
	f.format, f.set = v, true
	return nil
}

// accepted lists the values Set takes, the documented ones first.
func (f *outputFlag) accepted() []string {
	if f.textAlias {
		return []string{outputTable, outputJSON, outputTextAlias}
	}
	return []string{outputTable, outputJSON}
}

func (f *outputFlag) isJSON() bool { return f.format == outputJSON }

// jsonAlias is the value of the hidden --json: it sets --output json. It is kept so that the
// scripts written before --output go on working; the root prints a notice when it is used.
type jsonAlias struct{ out *outputFlag }

func (a jsonAlias) String() string   { return strconv.FormatBool(a.out.viaJSON) }
func (a jsonAlias) Type() string     { return "bool" }
func (a jsonAlias) IsBoolFlag() bool { return true }

func (a jsonAlias) Set(s string) error {
	on, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false")
	}
	if !on {
		return nil // --json=false asks for nothing: --output decides
	}
	if a.out.set && a.out.format != outputJSON {
		return fmt.Errorf("--output %s was given too: pass one of them", a.out.format)
	}
	a.out.format, a.out.viaJSON = outputJSON, true
	return nil
}

// annotationReplacedBy marks a hidden flag kept for older scripts; its value is what to use
// instead. The root prints the notice itself, on stderr: cobra's MarkDeprecated prints it
// on the command's out, which is stdout here, and would spoil the JSON a script reads.
const annotationReplacedBy = "tandem_replaced_by"

// addOutputFlag registers --output on cmd, with its completion. jsonIs says what the JSON is
// ("one JSON document", "JSON lines, …"), for the help. f.textAlias must be set before.
func addOutputFlag(cmd *cobra.Command, f *outputFlag, jsonIs string) {
	f.format = outputTable
	usage := "table (text for people) or json (" + jsonIs + ")"
	if f.textAlias {
		usage += "; text is the older spelling of table"
	}
	cmd.Flags().Var(f, "output", usage)
	_ = cmd.RegisterFlagCompletionFunc("output", func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var out []cobra.Completion
		for _, v := range [][2]string{{outputTable, "text for people"}, {outputJSON, "JSON for machines"}} {
			if strings.HasPrefix(v[0], toComplete) {
				out = append(out, cobra.CompletionWithDesc(v[0], v[1]))
			}
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	})
}

// addJSONAlias registers the hidden --json, the older spelling of --output json.
func addJSONAlias(cmd *cobra.Command, f *outputFlag) {
	fl := cmd.Flags().VarPF(jsonAlias{f}, "json", "", "the older spelling of --output json")
	fl.NoOptDefVal = "true"
	fl.Hidden = true
	fl.Annotations = map[string][]string{annotationReplacedBy: {"--output json"}}
}

// noticeReplacedFlags tells, on stderr, of each older flag spelling the command line used.
func noticeReplacedFlags(cmd *cobra.Command) {
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if use, ok := fl.Annotations[annotationReplacedBy]; ok && len(use) > 0 {
			fmt.Fprintf(cmd.ErrOrStderr(), "tandem: --%s is deprecated and will be removed: use %s\n", fl.Name, use[0])
		}
	})
}

// printResult writes v as one indented JSON document with --output json, else calls table.
func printResult(w io.Writer, f *outputFlag, v any, table func()) error {
	if !f.isJSON() {
		table()
		return nil
	}
	return writeJSON(w, v)
}

// writeJSON writes v as one indented JSON document.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeJSONLine writes v as one JSON line, for a command that streams.
func writeJSONLine(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
