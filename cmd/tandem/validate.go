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
		output         outputFlag
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
			res := validateResult{File: args[0]}
			spec, err := transform.Parse(args[0], data)
			if err != nil {
				var errs transform.SpecErrors
				if !errors.As(err, &errs) {
					return err
				}
				res.Problems = specProblems(errs)
				if err := printResult(out, &output, res, func() { res.print(out, colorsFor(cmd, out)) }); err != nil {
					return err
				}
				return errProblems
			}
			if err := overrides.apply(spec); err != nil {
				return err
			}
			res.describe(spec)
			if sample > 0 {
				ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
				defer cancel()
				if res.Sample, err = sampleRoundTrip(ctx, spec, sample, connectTimeout); err != nil {
					return err
				}
			}
			res.OK = res.Sample == nil || res.Sample.Exact == res.Sample.Documents
			if err := printResult(out, &output, res, func() { res.print(out, colorsFor(cmd, out)) }); err != nil {
				return err
			}
			if !res.OK {
				return errProblems
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&sample, "sample", 0, "read this many source documents and check reverse(forward(d)) == d")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "give up sampling after this long")
	cmd.Flags().DurationVar(&connectTimeout, "connect-timeout", defaultConnectTimeout, "how long reaching each store may take")
	cmd.Flags().StringVar(&overrides.sourceURI, "source-uri", "", "connection string of the source store, instead of the spec's (a DynamoDB source: its endpoint URL)")
	cmd.Flags().StringVar(&overrides.targetURI, "target-uri", "", "connection string of the target store, instead of the spec's (a DynamoDB target: its endpoint URL)")
	addOutputFlag(cmd, &output, "one JSON document: the spec's problems, or what it does and the sample's round trips")
	cmd.ValidArgsFunction = specFiles
	return cmd
}

// validateResult is what validate found, printed as text or, with --output json, as JSON.
type validateResult struct {
	File     string        `json:"file"`
	OK       bool          `json:"ok"`                 // no problem in the spec, every sampled document round-trips
	Problems []specProblem `json:"problems,omitempty"` // the spec's; nothing else is set when there are any

	Migration      string            `json:"migration,omitempty"`
	Version        string            `json:"version,omitempty"`
	Source         string            `json:"source,omitempty"`
	Target         string            `json:"target,omitempty"`
	SourceKey      string            `json:"source_key,omitempty"`
	TargetKey      string            `json:"target_key,omitempty"` // a DynamoDB target: "partition P[, sort S = V]"
	Forward        []validateStep    `json:"forward,omitempty"`
	Reverse        []validateStep    `json:"reverse,omitempty"`
	ReverseDerived bool              `json:"reverse_derived,omitempty"`
	Verify         *validateVerify   `json:"verify,omitempty"`
	Sample         *sampleRoundTrips `json:"sample,omitempty"` // with --sample N
}

type specProblem struct {
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
	text    string // file:line:col: path: message
}

type validateStep struct {
	Index   int    `json:"index"`
	Kind    string `json:"kind"`
	Summary string `json:"summary"`
	Line    int    `json:"line,omitempty"` // 0 for a derived reverse step
}

type validateVerify struct {
	Settle          string              `json:"settle"`
	MismatchBudget  int64               `json:"mismatch_budget"`
	MaxBacklog      int64               `json:"max_backlog"`
	RequiredIndexes int                 `json:"required_indexes"`
	Invariants      []validateInvariant `json:"invariants,omitempty"`
}

type validateInvariant struct {
	Name string `json:"name"`
	Line int    `json:"line"`
	Expr string `json:"expr"`
}

// sampleRoundTrips is what --sample found.
type sampleRoundTrips struct {
	Source    string        `json:"source"`
	Documents int           `json:"documents"` // read
	Exact     int           `json:"exact"`     // came back identical
	Differ    []sampleIssue `json:"differ"`    // came back different: the paths that differ
	Failed    []sampleIssue `json:"failed"`    // failed to transform: the error
}

type sampleIssue struct {
	Key    string `json:"key"`
	Detail string `json:"detail"`
}

func specProblems(errs transform.SpecErrors) []specProblem {
	out := make([]specProblem, len(errs))
	for i, e := range errs {
		out[i] = specProblem{Line: e.Line, Column: e.Column, Path: e.Path, Message: e.Msg, text: e.Error()}
	}
	return out
}

func validateSteps(steps []transform.StepInfo) []validateStep {
	out := make([]validateStep, len(steps))
	for i, st := range steps {
		out[i] = validateStep{Index: st.Index, Kind: st.Kind, Summary: st.Summary, Line: st.Line}
	}
	return out
}

// describe records what spec s does.
func (r *validateResult) describe(s *transform.Spec) {
	r.Migration, r.Version = s.Name, s.Version
	r.Source, r.Target = s.Source.String(), s.Target.String()
	r.SourceKey, r.TargetKey = s.Key.Source, s.Key.Target
	if s.Target.Kind == transform.StoreDynamoDB {
		r.TargetKey = "partition " + s.Key.Partition
		if s.Key.SortAttribute != "" {
			r.TargetKey += fmt.Sprintf(", sort %s = %v", s.Key.SortAttribute, s.Key.SortValue)
		}
	}
	r.Forward, r.Reverse, r.ReverseDerived = validateSteps(s.Steps()), validateSteps(s.ReverseSteps()), s.ReverseDerived()
	v := s.Verify
	r.Verify = &validateVerify{Settle: v.Settle.String(), MismatchBudget: int64(v.MismatchBudget), MaxBacklog: int64(v.MaxBacklog), RequiredIndexes: len(s.RequiredIndexes())}
	for _, iv := range v.Invariants {
		r.Verify.Invariants = append(r.Verify.Invariants, validateInvariant{Name: iv.Name, Line: iv.Line, Expr: iv.Expr})
	}
}

// print writes the result as text for people.
func (r *validateResult) print(w io.Writer, c palette) {
	if len(r.Problems) > 0 {
		fmt.Fprintf(w, "%s: %s\n", r.File, c.paint(ansiRed, fmt.Sprintf("%d problem(s)", len(r.Problems))))
		for _, p := range r.Problems {
			fmt.Fprintln(w, "  "+p.text)
		}
		return
	}
	fmt.Fprintf(w, "%s: %s — migration %s, spec version %s\n", r.File, c.state("ok"), r.Migration, r.Version)
	fmt.Fprintf(w, "  %s → %s (key %s → %s)\n", r.Source, r.Target, r.SourceKey, r.TargetKey)
	fmt.Fprintln(w, "  forward:")
	for _, st := range r.Forward {
		fmt.Fprintf(w, "    [%d] %s %s\n", st.Index, st.Kind, st.Summary)
	}
	how := "explicit"
	if r.ReverseDerived {
		how = "derived"
	}
	fmt.Fprintf(w, "  reverse (%s):\n", how)
	for _, st := range r.Reverse {
		fmt.Fprintf(w, "    [%d] %s %s\n", st.Index, st.Kind, st.Summary)
	}
	v := r.Verify
	fmt.Fprintf(w, "  verify: settle %s, mismatch budget %d, backlog limit %d, %d required index(es)\n",
		v.Settle, v.MismatchBudget, v.MaxBacklog, v.RequiredIndexes)
	for _, iv := range v.Invariants {
		fmt.Fprintf(w, "    invariant %s (line %d): %s\n", iv.Name, iv.Line, iv.Expr)
	}
	if s := r.Sample; s != nil {
		fmt.Fprintf(w, "sampled %d document(s) from %s: %d round-trip exactly, %s differ, %s fail to transform\n",
			s.Documents, s.Source, s.Exact, c.count(len(s.Differ)), c.count(len(s.Failed)))
		for _, d := range s.Differ {
			fmt.Fprintf(w, "  differs   %s: %s\n", d.Key, d.Detail)
		}
		for _, f := range s.Failed {
			fmt.Fprintf(w, "  fails     %s: %s\n", f.Key, f.Detail)
		}
	}
}

// sampleRoundTrip reads n source documents and checks each one's round trip.
func sampleRoundTrip(ctx context.Context, s *transform.Spec, n int, connectTimeout time.Duration) (*sampleRoundTrips, error) {
	src, err := openSource(ctx, s, connectTimeout)
	if err != nil {
		return nil, err
	}
	defer src.Close(context.Background())
	dst, err := openTarget(ctx, s, connectTimeout)
	if err != nil {
		return nil, err
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
		return nil, fmt.Errorf("reading %d sample documents from %s: %w", n, s.Source, err)
	}
	docs = docs[:min(n, len(docs))]

	res := &sampleRoundTrips{Source: s.Source.String(), Documents: len(docs), Differ: []sampleIssue{}, Failed: []sampleIssue{}}
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
			res.Failed = append(res.Failed, sampleIssue{Key: name, Detail: err.Error()})
			continue
		}
		if diff := transform.Diff(d, back); len(diff) > 0 {
			res.Differ = append(res.Differ, sampleIssue{Key: name, Detail: strings.Join(diff, "; ")})
		}
	}
	res.Exact = len(docs) - len(res.Differ) - len(res.Failed)
	return res, nil
}
