package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/admin"
	"github.com/tandemdb/tandem/flags"
)

// Environment variables the admin commands read.
const (
	envAdminURL   = "TANDEM_ADMIN_URL"
	envAdminToken = "TANDEM_ADMIN_TOKEN"
	envAdminUser  = "TANDEM_ADMIN_USER"
)

const defaultAdminURL = "http://127.0.0.1:9090"

// adminOptions are the flags every admin-API command shares.
type adminOptions struct {
	url       string        // default $TANDEM_ADMIN_URL, else defaultAdminURL
	tokenFile string        // optional; overrides $TANDEM_ADMIN_TOKEN
	user      string        // default $TANDEM_ADMIN_USER, else $USER; "" lets the server use the address
	output    outputFlag    // --output table|json (--json, the older spelling)
	timeout   time.Duration // default 30s

	sentToken bool // the client sends a token: set by client
}

func (o *adminOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	url := os.Getenv(envAdminURL)
	if url == "" {
		url = defaultAdminURL
	}
	user := os.Getenv(envAdminUser)
	if user == "" {
		user = os.Getenv("USER")
	}
	f.StringVar(&o.url, "admin", url, "admin API base URL (default from $"+envAdminURL+")")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the admin bearer token (default: $"+envAdminToken+")")
	f.StringVar(&o.user, "user", user, "name recorded in the audit trail (default from $"+envAdminUser+" or $USER)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up on the admin API after this long")
	addOutputFlag(cmd, &o.output, "the API's answer, one JSON document")
	addJSONAlias(cmd, &o.output)
	cmd.ValidArgsFunction = o.completeMigration(nil) // every admin command's first argument
}

// client checks the flags and builds the API client; needToken says the call changes state.
func (o *adminOptions) client(needToken bool) (*admin.Client, error) {
	if _, err := admin.ParseBaseURL(o.url); err != nil {
		return nil, usagef("--admin: %v", err)
	}
	if o.timeout <= 0 {
		return nil, usagef("--timeout %s: must be more than 0", o.timeout)
	}
	token := os.Getenv(envAdminToken)
	if o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return nil, usagef("--token-file: reading the admin token: %v", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, usagef("--token-file %s is empty: it must hold the admin token", o.tokenFile)
		}
	} else {
		token = strings.TrimSpace(token)
	}
	if strings.ContainsAny(token, "\r\n") {
		return nil, usagef("the admin token holds a line break: it must be one line")
	}
	if needToken && token == "" {
		return nil, usagef("no admin token: set $%s or pass --token-file PATH", envAdminToken)
	}
	c, err := admin.NewClient(o.url, token, &http.Client{Timeout: o.timeout})
	if err != nil {
		return nil, usagef("--admin: %v", err)
	}
	c.User = o.user
	o.sentToken = token != ""
	return c, nil
}

// print writes v as JSON with --output json, else calls text.
func (o *adminOptions) print(w io.Writer, v any, text func()) error {
	return printResult(w, &o.output, v, text)
}

// requireReason refuses an empty --reason.
func requireReason(cmd string, reason string) error {
	if strings.TrimSpace(reason) == "" {
		return usagef("%s needs --reason TEXT: it is recorded in the audit trail", cmd)
	}
	return nil
}

func newFlagsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "flags",
		Short: "Read or change a migration's flags through the admin API",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("flags %s: unknown subcommand: want get or set", args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef("flags needs a subcommand: get or set")
		},
	}
	cmd.AddCommand(newFlagsGetCmd(), newFlagsSetCmd())
	return cmd
}

func newFlagsGetCmd() *cobra.Command {
	var o adminOptions
	cmd := &cobra.Command{
		Use:   "get MIGRATION",
		Short: "Print a migration's flags",
		Args:  exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return adminRead(&o, cmd, func(ctx context.Context, c *admin.Client) (flags.Values, error) {
				return c.Get(ctx, args[0])
			}, func(out io.Writer, v flags.Values) {
				fmt.Fprintf(out, "%s:\n", args[0])
				printValues(out, v)
			})
		},
	}
	o.addFlags(cmd)
	return cmd
}

func newFlagsSetCmd() *cobra.Command {
	var o adminOptions
	var reason string
	cmd := &cobra.Command{
		Use:   "set MIGRATION FLAG=VALUE... --reason TEXT",
		Short: "Change flags (read_source, shadow_read_percent, write_block)",
		Long: `Change one or more flags in one audited change, for example
  tandem flags set users-v2 shadow_read_percent=10 read_source=old --reason "sample 10%"
Move the phase with "tandem phase", "tandem cutover" and "tandem rollback".`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usagef("flags set takes MIGRATION FLAG=VALUE... (got %d argument(s))", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			changes, err := parseAssignments(args[1:])
			if err != nil {
				return err
			}
			if err := requireReason("flags set", reason); err != nil {
				return err
			}
			return o.change(cmd, func(ctx context.Context, c *admin.Client) (flags.Values, error) {
				return c.Set(ctx, args[0], changes, reason)
			}, func(out io.Writer, v flags.Values) {
				fmt.Fprintf(out, "%s: set %s\n", args[0], formatAssignments(changes))
			})
		},
	}
	o.addFlags(cmd)
	cmd.ValidArgsFunction = o.completeMigration(completeAssignment)
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail (required)")
	return cmd
}

// change makes one state-changing call and prints the flag values it returns, after a headline.
func (o *adminOptions) change(cmd *cobra.Command, call func(context.Context, *admin.Client) (flags.Values, error), headline func(io.Writer, flags.Values)) error {
	return adminChange(o, cmd, call, func(out io.Writer, v flags.Values) {
		headline(out, v)
		printValues(out, v)
	})
}

// adminChange makes one state-changing admin API call (the token required) and prints what it
// returns: JSON with --output json, else text.
func adminChange[T any](o *adminOptions, cmd *cobra.Command, call func(context.Context, *admin.Client) (T, error), text func(io.Writer, T)) error {
	return adminCall(o, cmd, true, call, text)
}

// adminRead is adminChange for a read: the token is sent when there is one.
func adminRead[T any](o *adminOptions, cmd *cobra.Command, call func(context.Context, *admin.Client) (T, error), text func(io.Writer, T)) error {
	return adminCall(o, cmd, false, call, text)
}

func adminCall[T any](o *adminOptions, cmd *cobra.Command, needToken bool, call func(context.Context, *admin.Client) (T, error), text func(io.Writer, T)) error {
	c, err := o.client(needToken)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
	defer cancel()
	v, err := call(ctx, c)
	if err != nil {
		return o.apiError(err)
	}
	out := cmd.OutOrStdout()
	return o.print(out, v, func() { text(out, v) })
}

// parseAssignments reads FLAG=VALUE arguments; a flag named twice is refused.
func parseAssignments(args []string) (map[string]string, error) {
	changes := make(map[string]string, len(args))
	for _, a := range args {
		name, value, ok := strings.Cut(a, "=")
		name = strings.TrimSpace(name)
		switch {
		case !ok:
			return nil, usagef("%q: want FLAG=VALUE, for example read_source=new", a)
		case name == "":
			return nil, usagef("%q: no flag name before '='", a)
		}
		if _, dup := changes[name]; dup {
			return nil, usagef("flag %s given twice", name)
		}
		changes[name] = value
	}
	return changes, nil
}

func formatAssignments(changes map[string]string) string {
	names := make([]string, 0, len(changes))
	for k := range changes {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = k + "=" + changes[k]
	}
	return strings.Join(parts, " ")
}

func newPhaseCmd() *cobra.Command {
	var o adminOptions
	var reason string
	cmd := &cobra.Command{
		Use:   "phase MIGRATION PHASE --reason TEXT",
		Short: "Move a migration to the next phase (off → shadow → dual; cutover has its own command)",
		Args:  exactArgs(2, "MIGRATION PHASE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireReason("phase", reason); err != nil {
				return err
			}
			return o.change(cmd, func(ctx context.Context, c *admin.Client) (flags.Values, error) {
				return c.Advance(ctx, args[0], args[1], reason)
			}, func(out io.Writer, v flags.Values) {
				fmt.Fprintf(out, "%s: phase is now %s\n", args[0], v.Phase)
			})
		},
	}
	o.addFlags(cmd)
	cmd.ValidArgsFunction = o.completeMigration(o.completePhase)
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail (required)")
	return cmd
}

func newCutoverCmd() *cobra.Command {
	var o adminOptions
	var reason string
	cmd := &cobra.Command{
		Use:   "cutover MIGRATION [--reason TEXT]",
		Short: "Check the cutover gates and, if all pass, make the new store authoritative",
		Long: `Check the cutover gates (verification, change_lag, reverse_path) and, if every one passes,
move the migration to cutover. Each gate's result is printed; the exit status is 1 when a gate
failed, and nothing changed.`,
		Args: exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client(true)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
			defer cancel()
			res, err := c.Cutover(ctx, args[0], reason)
			out := cmd.OutOrStdout()
			var e *admin.Error
			if err != nil && !(errors.As(err, &e) && e.Code == admin.CodeGateFailed) {
				return o.apiError(err)
			}
			if o.output.isJSON() {
				if e != nil {
					_ = o.print(out, admin.ErrorResponse{Error: e.Message, Code: e.Code, Gates: e.Gates}, nil)
				} else if perr := o.print(out, res, nil); perr != nil {
					return perr
				}
			} else {
				printGates(out, colorsFor(cmd, out), res.Gates)
			}
			if e != nil {
				return gateFailure(args[0], e)
			}
			if !o.output.isJSON() {
				fmt.Fprintf(out, "%s: cut over — the new store is authoritative (roll back with: tandem rollback %s --reason TEXT)\n", args[0], args[0])
				printValues(out, res.Values)
			}
			return nil
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail")
	return cmd
}

// gateFailure names the failed gates in the error the command exits with; their details are
// printed above it (or in the JSON).
func gateFailure(migration string, e *admin.Error) error {
	failed := admin.FailedGates(e.Gates)
	if len(failed) == 0 {
		return fmt.Errorf("cutover of %s refused: %s", migration, e.Message)
	}
	names := make([]string, len(failed))
	for i, g := range failed {
		names[i] = g.Gate
	}
	return fmt.Errorf("cutover of %s refused: failed gate(s): %s; nothing changed", migration, strings.Join(names, ", "))
}

func printGates(w io.Writer, p palette, gates []flags.GateResult) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, g := range gates {
		status := "ok"
		if !g.OK {
			status = "FAILED"
		}
		fmt.Fprintf(tw, "  gate %s\t%s\t%s\n", g.Gate, p.state(status), g.Detail)
	}
	_ = tw.Flush()
}

func newRollbackCmd() *cobra.Command {
	var o adminOptions
	var reason, to string
	cmd := &cobra.Command{
		Use:   "rollback MIGRATION --reason TEXT [--to PHASE]",
		Short: "Make the old store authoritative again; never gated",
		Args:  exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireReason("rollback", reason); err != nil {
				return err
			}
			return o.change(cmd, func(ctx context.Context, c *admin.Client) (flags.Values, error) {
				return c.Rollback(ctx, args[0], to, reason)
			}, func(out io.Writer, v flags.Values) {
				fmt.Fprintf(out, "%s: rolled back to %s — the old store is authoritative\n", args[0], v.Phase)
			})
		},
	}
	o.addFlags(cmd)
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit trail (required)")
	cmd.Flags().StringVar(&to, "to", "", "phase to return to (default: the server's choice)")
	_ = cmd.RegisterFlagCompletionFunc("to", o.completeRollbackTo)
	return cmd
}

func newHistoryCmd() *cobra.Command {
	var o adminOptions
	var limit int
	cmd := &cobra.Command{
		Use:   "history MIGRATION",
		Short: "Print a migration's audit trail: who changed what, when and why",
		Args:  exactArgs(1, "MIGRATION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 || limit > admin.MaxHistoryLimit {
				return usagef("--limit %d: want 0 to %d", limit, admin.MaxHistoryLimit)
			}
			return adminRead(&o, cmd, func(ctx context.Context, c *admin.Client) ([]admin.HistoryEntry, error) {
				return c.History(ctx, args[0], limit)
			}, func(out io.Writer, entries []admin.HistoryEntry) { printHistory(out, args[0], entries) })
		},
	}
	o.addFlags(cmd)
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many entries (0: the server's default)")
	return cmd
}

func printHistory(w io.Writer, migration string, entries []admin.HistoryEntry) {
	if len(entries) == 0 {
		fmt.Fprintf(w, "%s: no changes recorded\n", migration)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "AT\tWHO\tCHANGE\tWHY")
	for _, e := range entries {
		what := e.Kind
		if e.Subject != "" {
			what += " " + e.Subject
		}
		from := e.From
		if from == "" {
			from = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s → %s\t%s\n", e.At.UTC().Format(time.RFC3339), e.Who, what, from, e.To, oneLine(e.Why))
	}
	_ = tw.Flush()
}

func printValues(w io.Writer, v flags.Values) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  %s\t%s\n", flags.FlagPhase, v.Phase)
	fmt.Fprintf(tw, "  %s\t%s\n", flags.FlagReadSource, v.ReadSource)
	fmt.Fprintf(tw, "  %s\t%s\n", flags.FlagShadowReadPercent, strconv.FormatFloat(v.ShadowReadPercent, 'g', -1, 64))
	fmt.Fprintf(tw, "  %s\t%t\n", flags.FlagWriteBlock, v.WriteBlock)
	fmt.Fprintf(tw, "  revision\t%d\n", v.Revision)
	_ = tw.Flush()
}

// oneLine folds a multi-line message (a reason, a driver's error) into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// apiError keeps the server's message and code, and says what to do about a refused token
// (401): the server's words speak of HTTP headers and the dashboard's sign-in. A read refused
// for want of one means this admin API wants the token for reads too (the proxy runs without
// --admin-open-reads), which the CLI sends only when it has one. A 403 (the server has no
// token) is left as the server words it.
func (o *adminOptions) apiError(err error) error {
	var e *admin.Error
	if !errors.As(err, &e) || e.Code != admin.CodeUnauthorized || e.Status != http.StatusUnauthorized {
		return err
	}
	return tokenError{err: err, sent: o.sentToken}
}

// tokenError is a call refused with 401; it unwraps to the server's error.
type tokenError struct {
	err  error
	sent bool // a token was sent, and refused
}

func (e tokenError) Error() string {
	if e.sent {
		return fmt.Sprintf("the admin API refused the token: check $%s or --token-file (%s)", envAdminToken, admin.CodeUnauthorized)
	}
	return fmt.Sprintf("this admin API needs the token for reads too: set $%s or --token-file (%s)", envAdminToken, admin.CodeUnauthorized)
}

func (e tokenError) Unwrap() error { return e.err }

// exactArgs is cobra.ExactArgs with a usage error that names the arguments.
func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s (got %d argument(s))", cmd.Name(), names, len(args))
		}
		for i, a := range args {
			if strings.TrimSpace(a) == "" {
				return usagef("%s: argument %d is empty", cmd.Name(), i+1)
			}
		}
		return nil
	}
}
