package main

import (
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Colour is used sparingly, where it helps an operator read a result at a glance: states in
// tables and the cutover gates' results. It is on only when stdout is a terminal, and never
// with --no-color or $NO_COLOR set to anything (https://no-color.org).
// $CLICOLOR_FORCE (https://bixense.com/clicolors), set to anything but 0, turns it on where
// stdout is not a terminal (a pager that shows colour, or a test); --no-color and $NO_COLOR
// still win over it.
const (
	envNoColor    = "NO_COLOR"
	envColorForce = "CLICOLOR_FORCE"
	flagNoColor   = "no-color" // the root's persistent flag
)

// ANSI foreground colours. Each code has the same length, which keeps tabwriter's columns
// aligned: tabwriter counts the escape bytes as width, so every cell of a painted column is
// painted (plain ones in the default colour) and each carries the same number of them.
const (
	ansiRed     = "\x1b[31m"
	ansiGreen   = "\x1b[32m"
	ansiYellow  = "\x1b[33m"
	ansiDefault = "\x1b[39m"
	ansiReset   = "\x1b[0m"
)

// palette paints text when colour is on, and leaves it alone when not.
type palette struct{ on bool }

// colorsFor is the palette for what cmd prints on w.
func colorsFor(cmd *cobra.Command, w io.Writer) palette {
	noColor, _ := cmd.Flags().GetBool(flagNoColor) // merged from the root; false when absent
	return palette{on: useColor(w, noColor)}
}

// useColor decides whether what goes to w may be coloured.
func useColor(w io.Writer, noColor bool) bool {
	if noColor || os.Getenv(envNoColor) != "" {
		return false
	}
	if f := os.Getenv(envColorForce); f != "" && f != "0" {
		return true
	}
	return isTerminal(w)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (p palette) paint(code, s string) string {
	if !p.on {
		return s
	}
	return code + s + ansiReset
}

// plain is s in the default colour: for the header and the other cells of a painted column.
func (p palette) plain(s string) string { return p.paint(ansiDefault, s) }

// state paints a state, a gate's result or a verdict by what it means for the operator: all
// is well (green), something stopped or failed and needs them (red), something waits or
// holds back (yellow); any other in the default colour.
func (p palette) state(s string) string { return p.stateAs(s, s) }

// stateAs paints text in the colour of state ("running 40%" as running is).
func (p palette) stateAs(state, text string) string {
	switch strings.ToLower(state) {
	case "ok", "done", "running", "copying", "clean", "pass":
		return p.paint(ansiGreen, text)
	case "failed", "fail", "stopped", "history_lost", "invalidated", "bad_event", "not clean":
		return p.paint(ansiRed, text)
	case "paused", "backing_off", "throttled", "waiting", "stalled":
		return p.paint(ansiYellow, text)
	}
	return p.plain(text)
}

// severity paints a problem's severity: critical red, warning yellow.
func (p palette) severity(s string) string {
	switch s {
	case "critical":
		return p.paint(ansiRed, s)
	case "warning":
		return p.paint(ansiYellow, s)
	}
	return p.plain(s)
}

// mark is a gate's result at a glance: a green ✓ or a red ✗.
func (p palette) mark(ok bool) string {
	if ok {
		return p.paint(ansiGreen, "✓")
	}
	return p.paint(ansiRed, "✗")
}

// count paints a count of problems: red when there are any.
func (p palette) count(n int) string {
	s := strconv.Itoa(n)
	if n == 0 {
		return s
	}
	return p.paint(ansiRed, s)
}
