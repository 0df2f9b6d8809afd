// Package benchenv holds what the benchmark programs share: percentiles and number formats for
// their tables, and the machine, load and commit facts every result is reported with.
package benchenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Percentile is the nearest-rank percentile of sorted durations.
func Percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// Dur formats a duration for a table: µs below 1 ms, two decimals below 10 ms, then one.
func Dur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
}

// Signed formats a duration difference with its sign.
func Signed(d time.Duration) string {
	if d < 0 {
		return "-" + Dur(-d)
	}
	return "+" + Dur(d)
}

// Ops formats a rate for a table: one decimal below 100.
func Ops(v float64) string {
	if v < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

// CommandLine reconstructs the command that started the program; under go run, os.Args[0]
// is a temporary binary, shown as "go run pkg".
func CommandLine(pkg string) string {
	args := make([]string, 0, len(os.Args))
	for _, a := range os.Args[1:] {
		if a == "" || strings.ContainsAny(a, " \t'\"$`\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		args = append(args, a)
	}
	prog := os.Args[0]
	if strings.Contains(prog, "go-build") || strings.HasPrefix(filepath.Base(filepath.Dir(prog)), "exe") {
		prog = "go run " + pkg
	}
	return strings.TrimSpace(prog + " " + strings.Join(args, " "))
}

// CPUModel is the CPU model name from /proc/cpuinfo, or "unknown".
func CPUModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// LoadAvg returns the 1, 5 and 15 minute load averages: other work on the machine skews results.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// GitCommit names the commit being measured, with -dirty when the work tree has changes.
func GitCommit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=12").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// Kernel is the running kernel release, or "unknown".
func Kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// SplitList splits a comma-separated flag value, dropping empty items.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// ParseInts parses a comma-separated list of positive integers.
func ParseInts(s string) ([]int, error) {
	var out []int
	for _, f := range SplitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("empty list")
	}
	return out, nil
}

// Median is the median of v (the mean of the middle two for an even count); 0 for none.
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// PrintHeader prints the lines a benchmark program's output starts with: the program and the
// machine, the command line that reruns it (pkg as `go run` names it), the settings line the
// caller formats, and the start time with the load average.
func PrintHeader(name, pkg, settings string) {
	fmt.Printf("# %s: %s, GOMAXPROCS %d, %d CPUs (%s), kernel %s, commit %s\n",
		name, runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), CPUModel(), Kernel(), GitCommit())
	fmt.Printf("# command: %s\n", CommandLine(pkg))
	fmt.Printf("# settings: %s\n", settings)
	fmt.Printf("# started %s, load average %s\n", time.Now().UTC().Format(time.RFC3339), LoadAvg())
}
