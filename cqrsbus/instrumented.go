package cqrsbus

import (
	"runtime"
	"sync"
	"weak"
)

// instrumented holds a weak pointer to every configuration this package
// instrumented, so that instrumenting one twice is reported instead of
// chaining the hooks twice. Weak pointers keep the configurations
// collectable; a cleanup drops the entry when one is collected.
var instrumented sync.Map // weak.Pointer[T] -> struct{}

// claim marks c as instrumented and reports whether it was not already.
func claim[T any](c *T) bool {
	k := weak.Make(c)
	if _, loaded := instrumented.LoadOrStore(k, struct{}{}); loaded {
		return false
	}
	runtime.AddCleanup(c, func(k weak.Pointer[T]) { instrumented.Delete(k) }, k)
	return true
}
