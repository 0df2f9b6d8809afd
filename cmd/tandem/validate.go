package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/tandemdb/tandem/adapters"
	"github.com/tandemdb/tandem/transform"
)

// errProblems makes validate exit non-zero after it has printed what it found.
var errProblems = errors.New("validation found problems")

func newValidateCmd(g *globalOptions) *cobra.Command {
	var (
		sample         int
		timeout        time.Duration
		connectTimeout time.Duration
		overrides      storeOverrides
	)
	cmd := &cobra.Command{
		Use:   "validate SPEC",
		Short: "Check a migration spec, and optionally its round trip on sample documents",
		Long: `Check a migration spec: every problem is reported with its file, line and field path.
With --sample N, read N documents from the source, run the forward then the reverse transform
(through the target store's value mapping), and report each document that does not come back
identical (with the paths that differ) and each one that fails to transform. The exit status is
non-zero when anything is wrong.`,
		Args: exactArgs(1, "SPEC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case sample < 0:
				return usagef("--sample %d: must be 0 or more", sample)
			case timeout <= 0:
				return usagef("--timeout %s: must be more than 0", timeout)
			case connectTimeout <= 0:
				return usagef("--connect-timeout %s: must be more than 0", connectTimeout)
			}
			out := cmd.OutOrStdout()
			data, err := os.ReadFile(args[0])
			if err != nil {
				return usagef("spec %s: %v", args[0], errors.Unwrap(err))
			}
			spec, err := transform.Parse(args[0], data)
			if err != nil {
				var errs transform.SpecErrors
				if errors.As(err, &errs) {
					fmt.Fprintf(out, "%s: %d problem(s)\n", args[0], len(errs))
					for _, e := range errs {
						fmt.Fprintln(out, "  "+e.Error())
					}
					return errProblems
				}
				return err
			}
			if err := overrides.apply(spec); err != nil {
				return err
			}
			describeSpec(out, spec)
			if sample == 0 {
				return nil
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return sampleRoundTrip(ctx, out, spec, sample, connectTimeout)
		},
	}
	cmd.Flags().IntVar(&sample, "sample", 0, "read this many source documents and check reverse(forward(d)) == d")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up sampling after this long")
	cmd.Flags().DurationVar(&connectTimeout, "connect-timeout", defaultConnectTimeout, "how long reaching each store may take")
	cmd.Flags().StringVar(&overrides.sourceURI, "source-uri", "", "connection string of the source store, instead of the spec's (a DynamoDB source: its endpoint URL)")
	cmd.Flags().StringVar(&overrides.targetURI, "target-uri", "", "connection string of the target store, instead of the spec's (a DynamoDB target: its endpoint URL)")
	return cmd
}

func describeSpec(w io.Writer, s *transform.Spec) {
	fmt.Fprintf(w, "%s: ok — migration %s, spec version %s\n", s.File, s.Name, s.Version)
	target := s.Key.Target
	if s.Target.Kind == transform.StoreDynamoDB {
		target = "partition " + s.Key.Partition
		if s.Key.SortAttribute != "" {
			target += fmt.Sprintf(", sort %s = %v", s.Key.SortAttribute, s.Key.SortValue)
		}
	}
	fmt.Fprintf(w, "  %s → %s (key %s → %s)\n", s.Source, s.Target, s.Key.Source, target)
	fmt.Fprintln(w, "  forward:")
	for _, st := range s.Steps() {
		fmt.Fprintf(w, "    [%d] %s %s\n", st.Index, st.Kind, st.Summary)
	}
	how := "explicit"
	if s.ReverseDerived() {
		how = "derived"
	}
	fmt.Fprintf(w, "  reverse (%s):\n", how)
	for _, st := range s.ReverseSteps() {
		fmt.Fprintf(w, "    [%d] %s %s\n", st.Index, st.Kind, st.Summary)
	}
	v := s.Verify
	fmt.Fprintf(w, "  verify: settle %s, mismatch budget %d, backlog limit %d, %d required index(es)\n",
		v.Settle, v.MismatchBudget, v.MaxBacklog, len(s.RequiredIndexes()))
	for _, iv := range v.Invariants {
		fmt.Fprintf(w, "    invariant %s (line %d): %s\n", iv.Name, iv.Line, iv.Expr)
	}
}

// sampleRoundTrip reads n source documents and checks each one's round trip.
func sampleRoundTrip(ctx context.Context, w io.Writer, s *transform.Spec, n int, connectTimeout time.Duration) error {
	src, err := openSource(ctx, s, connectTimeout)
	if err != nil {
		return err
	}
	defer src.Close(context.Background())
	dst, err := openTarget(ctx, s, connectTimeout)
	if err != nil {
		return err
	}
	defer dst.Close(context.Background())

	var docs []bson.D
	errEnough := errors.New("enough")
	err = src.Scan(ctx, adapters.Partition{}, adapters.ScanOptions{Batch: min(n, 500)}, func(batch []bson.D) error {
		docs = append(docs, batch...)
		if len(docs) >= n {
			return errEnough
		}
		return nil
	})
	if err != nil && !errors.Is(err, errEnough) {
		return fmt.Errorf("reading %d sample documents from %s: %w", n, s.Source, err)
	}
	docs = docs[:min(n, len(docs))]

	var differ, failed []string
	for _, d := range docs {
		key, kerr := src.KeyOf(d)
		name := "(no key)"
		if kerr == nil {
			name = adapters.KeyString(key)
		}
		fwd, err := s.Forward(d)
		if err == nil {
			fwd, err = dst.Normalize(fwd) // what the target would hold
		}
		var back bson.D
		if err == nil {
			back, err = s.Reverse(fwd)
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		if diff := transform.Diff(d, back); len(diff) > 0 {
			differ = append(differ, fmt.Sprintf("%s: %s", name, strings.Join(diff, "; ")))
		}
	}
	fmt.Fprintf(w, "sampled %d document(s) from %s: %d round-trip exactly, %d differ, %d fail to transform\n",
		len(docs), s.Source, len(docs)-len(differ)-len(failed), len(differ), len(failed))
	for _, l := range differ {
		fmt.Fprintln(w, "  differs   "+l)
	}
	for _, l := range failed {
		fmt.Fprintln(w, "  fails     "+l)
	}
	if len(differ)+len(failed) > 0 {
		return errProblems
	}
	return nil
}
