package promobs

import (
	"context"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// DefaultExemplarInterval is how often, at most, one series (one bucket of
// a histogram) takes a new exemplar; see [WithExemplarInterval].
const DefaultExemplarInterval = 100 * time.Millisecond

// exemplar is what the observations made for one context may carry: the
// trace ID of its span, if that span is sampled, as of the time at. Its
// labels are built on first use, so that observations a gate holds back
// cost nothing. The zero exemplar (no sampled span) carries nothing; it is
// a value so that a message's exemplar lives on the stack.
type exemplar struct {
	at      time.Time
	traceID trace.TraceID
	labels  prometheus.Labels
}

// exemplarOf returns the exemplar of observations made for ctx at time at.
func exemplarOf(ctx context.Context, at time.Time) exemplar {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() || !sc.HasTraceID() {
		return exemplar{}
	}
	return exemplar{at: at, traceID: sc.TraceID()}
}

// carried reports whether e (which may be nil) is the exemplar of a
// sampled span.
func (e *exemplar) carried() bool { return e != nil && e.traceID.IsValid() }

func (e *exemplar) get() prometheus.Labels {
	if e.labels == nil {
		e.labels = prometheus.Labels{"trace_id": e.traceID.String()}
	}
	return e.labels
}

// exemplarGate lets one exemplar a slot through per interval: a counter
// has one slot, a histogram one per bucket (+Inf included), as
// client_golang keeps one exemplar per counter and per bucket. Prometheus
// reads only the exemplar present at a scrape, so building one for every
// observation (seven allocations in client_golang) is work nobody sees;
// a bucket per slot keeps an exemplar on the rare slow bucket however busy
// the fast ones are. A nil gate lets every exemplar through.
type exemplarGate struct {
	interval int64 // nanoseconds
	// last holds, per slot, the UnixNano of the exemplar let through last,
	// 0 before the first.
	last []atomic.Int64
}

func newExemplarGate(interval time.Duration, slots int) *exemplarGate {
	if interval <= 0 {
		return nil
	}
	return &exemplarGate{interval: int64(interval), last: make([]atomic.Int64, slots)}
}

// open reports whether an exemplar at time at may be recorded in slot, and
// if so takes the slot until at + interval. A clock that went back opens
// the slot, so that a step of the wall clock cannot close it for long.
func (g *exemplarGate) open(slot int, at time.Time) bool {
	if g == nil {
		return true
	}
	t := at.UnixNano()
	last := &g.last[slot]
	prev := last.Load()
	if prev != 0 && t >= prev && t-prev < g.interval {
		return false
	}
	return last.CompareAndSwap(prev, t)
}

// exemplarRule is how the series of a collector take exemplars: through a
// gate of interval, or, when interval is not positive, on every
// observation.
type exemplarRule struct{ interval time.Duration }

// exemplarRuleOf turns the configured interval into a rule: zero is the
// default, a negative interval means every observation.
func exemplarRuleOf(interval time.Duration) exemplarRule {
	if interval == 0 {
		interval = DefaultExemplarInterval
	}
	return exemplarRule{interval: interval}
}

// counter and histogram keep a child together with its exemplar interface,
// asserted once, and its gate.
type counter struct {
	c    prometheus.Counter
	ex   prometheus.ExemplarAdder
	gate *exemplarGate
}

func (r exemplarRule) counter(c prometheus.Counter) counter {
	ex, _ := c.(prometheus.ExemplarAdder)
	return counter{c: c, ex: ex, gate: newExemplarGate(r.interval, 1)}
}

// add adds v, with e as exemplar if e is carried and the gate lets it
// through.
func (c counter) add(v float64, e *exemplar) {
	if e.carried() && c.ex != nil && c.gate.open(0, e.at) {
		c.ex.AddWithExemplar(v, e.get())
		return
	}
	c.c.Add(v)
}

type histogram struct {
	o       prometheus.Observer
	ex      prometheus.ExemplarObserver
	buckets []float64
	gate    *exemplarGate
}

// histogram takes the buckets o was created with, to gate exemplars per
// bucket.
func (r exemplarRule) histogram(o prometheus.Observer, buckets []float64) histogram {
	ex, _ := o.(prometheus.ExemplarObserver)
	return histogram{o: o, ex: ex, buckets: buckets, gate: newExemplarGate(r.interval, len(buckets)+1)}
}

// observe observes v, with e as exemplar if e is carried and the gate of
// v's bucket lets it through.
func (h histogram) observe(v float64, e *exemplar) {
	// The bucket is the first whose upper bound is at least v, as in
	// client_golang; past the last bound (or NaN) it is +Inf, len(buckets).
	if e.carried() && h.ex != nil && h.gate.open(sort.SearchFloat64s(h.buckets, v), e.at) {
		h.ex.ObserveWithExemplar(v, e.get())
		return
	}
	h.o.Observe(v)
}
