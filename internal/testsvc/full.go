package testsvc

import "os"

// Full reports whether full-size test scenarios were asked for, by setting
// the environment variable WMOBS_FULL to "1" (make test-integration does).
// Tests that take minutes (conformance suites, large message counts) run
// only then, or run a reduced size otherwise, so that make test stays fast.
func Full() bool { return os.Getenv("WMOBS_FULL") == "1" }
