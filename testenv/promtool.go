package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
)

// ErrPromtoolMissing means Prometheus' promtool is not installed: `make promtool` extracts it
// from Debian's prometheus package into .cache/prometheus.
var ErrPromtoolMissing = errors.New("promtool is not installed (run `make promtool`)")

// Promtool returns the promtool the deploy tests run: $TANDEM_PROMTOOL (which `make test`
// sets), else promtool on PATH. When there is none, the test is skipped, or fails when
// TANDEM_REQUIRE_PROMTOOL=1 or TANDEM_REQUIRE_CLIENTS=1 (make test).
func Promtool(tb testing.TB) string {
	tb.Helper()
	path, err := findPromtool()
	skipOrFail(tb, err, ErrPromtoolMissing, "TANDEM_REQUIRE_PROMTOOL", "promtool", "Prometheus rule tests")
	return path
}

func findPromtool() (string, error) {
	if p := os.Getenv("TANDEM_PROMTOOL"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("TANDEM_PROMTOOL=%s: %w: %w", p, ErrPromtoolMissing, err)
		}
		return p, nil
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		return "", fmt.Errorf("no TANDEM_PROMTOOL and no promtool on PATH: %w", ErrPromtoolMissing)
	}
	return p, nil
}
