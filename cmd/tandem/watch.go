package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
)

// watch is what --watch repeats: a read of the admin API and the view of what it read.
type watch[T any] struct {
	// what names the command in the error line of a failed read ("backfill status users-v2").
	what     string
	interval time.Duration
	// read reads the view once; it bounds its own calls (--timeout), and is given the
	// command's context, which Ctrl-C ends.
	read func(context.Context) (T, error)
	// show prints the view as text; now is when it was read.
	show func(w io.Writer, c palette, v T, now time.Time)
	// done, when set, ends the watch after the view it says is the last one (a finished
	// backfill); nil watches until Ctrl-C.
	done func(T) bool
}

// run shows the view every interval until done says so or the command's context ends
// (Ctrl-C), which is no error. On a terminal the screen is redrawn in place; elsewhere each
// view follows the last after a blank line; with --output json each view is one JSON line.
// A failed first read fails the command; a later one is reported on stderr and read again,
// so that a proxy restarting does not end the watch.
func (wt watch[T]) run(cmd *cobra.Command, o *adminOptions) error {
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	redraw, colors := isTerminal(out), colorsFor(cmd, out)
	for n := 0; ; n++ {
		v, err := wt.read(cmd.Context())
		switch {
		case cmd.Context().Err() != nil:
			return nil
		case err != nil && n == 0:
			return o.apiError(err)
		case err != nil:
			fmt.Fprintf(errOut, "tandem: %s: %s (reading again in %s)\n", wt.what, errorLine(o.apiError(err)), wt.interval)
		case o.output.isJSON():
			if err := writeJSONLine(out, v); err != nil {
				return err
			}
		default:
			now := time.Now()
			if redraw {
				fmt.Fprint(out, "\x1b[H\x1b[2J") // cursor home, clear the screen
			} else if n > 0 {
				fmt.Fprintln(out)
			}
			fmt.Fprintf(out, "%s  (every %s, Ctrl-C to stop)\n", now.Format("15:04:05"), wt.interval)
			wt.show(out, colors, v, now)
		}
		if err == nil && wt.done != nil && wt.done(v) {
			return nil
		}
		select {
		case <-cmd.Context().Done():
			return nil
		case <-time.After(wt.interval):
		}
	}
}

// checkInterval refuses an --interval of 0 or less.
func checkInterval(interval time.Duration) error {
	if interval <= 0 {
		return usagef("--interval %s: must be more than 0", interval)
	}
	return nil
}
