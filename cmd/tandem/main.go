// Command tandem runs the tandem migration proxy and its tools.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit status; an error is printed on stderr
// as one line starting with "tandem:".
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "tandem:", errorLine(err))
	}
	return exitCode(err)
}

// Exit statuses, as the README's table gives them.
const (
	exitOK     = 0 // the command did what was asked
	exitFailed = 1 // an operation was refused or failed (a gate, a bad token, an unreachable store)
	exitUsage  = 2 // a bad command line: unknown command or flag, wrong arguments, a bad value
)

// exitCode maps a command's error to the process's exit status.
func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	default:
		return exitFailed
	}
}

// errorLine is err as the one line main prints: joined errors are separated by "; ".
func errorLine(err error) string {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "; ")
}

// usageError marks a bad flag or argument; the process exits with status 2.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

type globalOptions struct {
	logLevel  string
	logFormat string
	noColor   bool // read by colorsFor through the command's merged flags
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	var g globalOptions
	root := &cobra.Command{
		Use:           "tandem",
		Short:         "Change the shape of MongoDB data while the application keeps running",
		Long:          "tandem is a MongoDB wire-protocol proxy that shadow-writes a transformed copy of every change to a new schema, verifies it, and cuts over or rolls back with a flag.",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.PersistentFlags().BoolVar(&g.noColor, flagNoColor, false, "no colour in what is printed (also $"+envNoColor+"); colour is only ever used on a terminal")
	root.AddCommand(newProxyCmd(&g), newDemoCmd(&g), newValidateCmd(&g), newRunCmd(&g), newFlagsCmd(), newBackfillCmd(&g), newCDCCmd(&g), newPhaseCmd(), newCutoverCmd(), newRollbackCmd(), newHistoryCmd(), newVerifyCmd(), newReportCmd(), newStatusCmd(), newDeadLettersCmd())
	root.SuggestionsMinimumDistance = 2
	addCompletionCmd(root)
	strictHelpCmd(root)
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return unknownCommand(cmd, args[0])
		}
		return nil
	}
	root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	// No subcommand has a PersistentPreRunE of its own, so this one runs before each.
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		noticeReplacedFlags(cmd)
		return nil
	}
	usageArgs(root)
	return root
}

// strictHelpCmd makes "tandem help NAME" follow the exit statuses: cobra's help command
// prints "Unknown help topic" and exits 0, or shows the parent's help for a subcommand that
// does not exist; here both are usage errors.
func strictHelpCmd(root *cobra.Command) {
	root.InitDefaultHelpCmd()
	for _, help := range root.Commands() {
		if help.Name() != "help" || help.Run == nil {
			continue
		}
		show := help.Run
		help.Run = nil
		help.RunE = func(c *cobra.Command, args []string) error {
			cmd, rest, err := c.Root().Find(args)
			switch {
			case err != nil:
				return usageError{err}
			case len(rest) > 0 && cmd.HasSubCommands():
				return unknownCommand(cmd, rest[0])
			}
			show(c, args)
			return nil
		}
	}
}

// unknownCommand is the usage error for an argument that names no subcommand of cmd.
func unknownCommand(cmd *cobra.Command, name string) error {
	msg := fmt.Sprintf("unknown command %q for %q", name, cmd.CommandPath())
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		msg += fmt.Sprintf(" (did you mean %s?)", strings.Join(s, " or "))
	}
	return usageError{errors.New(msg + "; see tandem --help")}
}

// usageArgs makes every positional-argument check under cmd a usage error (exit status 2);
// cobra's own checks return plain errors.
func usageArgs(cmd *cobra.Command) {
	if check := cmd.Args; check != nil {
		cmd.Args = func(c *cobra.Command, args []string) error {
			if err := check(c, args); err != nil {
				var ue usageError
				if errors.As(err, &ue) {
					return err
				}
				return usageError{err}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		usageArgs(sub)
	}
}

// logger builds the process logger from the global flags; logs go to stderr.
func (g *globalOptions) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	switch strings.ToLower(g.logLevel) {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		return nil, usagef("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(g.logFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, usagef("--log-format %q: want text or json", g.logFormat)
	}
}
