package testsvc

import (
	"io"
	"os"
	"testing"
)

// Stdout runs program with os.Stdout captured and returns what it wrote, so
// that a demo's main can be tested in the test process (where goleak sees
// its goroutines) and its output read as a user sees it. program may fail
// t: standard output is restored either way.
func Stdout(t testing.TB, program func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan []byte, 1) // buffered: the reader ends even if program fails t
	go func() {
		b, _ := io.ReadAll(r)
		read <- b
	}()
	stdout := os.Stdout
	os.Stdout = w
	func() {
		defer func() {
			os.Stdout = stdout
			_ = w.Close()
		}()
		program()
	}()
	out := <-read
	_ = r.Close()
	return string(out)
}
