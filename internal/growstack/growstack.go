// Package growstack grows the stack of the calling goroutine ahead of deep
// work.
//
// Watermill's router handles every message on a new goroutine, whose stack
// starts small (2 KiB unless the runtime has learned a larger average). An
// SDK span start on it (sampler, span allocation, processors) needs about
// 3 KiB, so the runtime grows the stack in the middle of it. Growing copies
// the stack and adjusts every frame on it, and the adjusting, not the copy,
// is what costs: growing with two frames on the stack is a fraction of the
// price of growing with ten. Grow moves that growth to the top of a
// middleware, where the stack is shallow. CockroachDB does the same for its
// RPC handlers.
package growstack

// Reserve is how many bytes of stack Grow makes room for below its caller:
// the depth of an OpenTelemetry SDK span start with the default samplers,
// measured from the frame sizes the compiler reports, plus slack.
const Reserve = 3 << 10

// index is only read, by Grow, so that the compiler cannot prove which
// element Grow returns and drop the array.
var index uint

// Grow makes sure the calling goroutine has about [Reserve] bytes of stack
// free below the caller. When it already has, Grow costs a few tens of
// nanoseconds. Its result means nothing; it is there so that the frame is
// kept.
//
//go:noinline
func Grow() byte {
	var frame [Reserve]byte
	return frame[index%Reserve]
}
