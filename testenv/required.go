package testenv

import (
	"errors"
	"os"
	"testing"
)

// required reports whether tests must fail, not skip, without a test server: its own variable
// (TANDEM_REQUIRE_MOTO, …) or TANDEM_REQUIRE_CLIENTS (which `make test` sets) is 1.
func required(envVar string) bool {
	return os.Getenv(envVar) == "1" || os.Getenv("TANDEM_REQUIRE_CLIENTS") == "1"
}

// skipOrFail ends a test that could not start a test server: with t.Skip when the server is
// not installed (err wraps missing) and not required (envVar), with t.Fatal otherwise; nil
// does nothing. what names the server and the tests.
func skipOrFail(tb testing.TB, err, missing error, envVar, server, tests string) {
	tb.Helper()
	if err == nil {
		return
	}
	switch {
	case errors.Is(err, missing) && !required(envVar):
		tb.Skipf("%s skipped: %v", tests, err)
	case errors.Is(err, missing):
		tb.Fatalf("%v; %s or TANDEM_REQUIRE_CLIENTS is set, so this fails", err, envVar)
	default:
		tb.Fatalf("%s: %v", server, err)
	}
}
