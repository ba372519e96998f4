package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// The checker of the chaos run reads the recorded history: every
// "message handled" record of every process (killed ones included), the
// "order placed" records of the api, every message of every stream in
// Redis (UUID, metadata, payload), the sagas' end, the effect log and the
// orders table; then asserts what issue #16 asks.

// handledRec is one "message handled" record.
type handledRec struct {
	proc                                  *chaosProc
	at                                    time.Time
	kind, typ, outcome, uuid, corr, cause string
	trace, span, handler, topic           string
}

// placedRec is one "order placed" record of the api.
type placedRec struct {
	orderID, corr, card string
	at                  time.Time
}

// streamMsg is one message as Redis Streams kept it.
type streamMsg struct {
	uuid, topic, typ, orderID, corr, cause string
}

type chaosHistory struct {
	handled  []handledRec
	placed   map[string]placedRec // by order ID
	msgs     map[string]streamMsg // by UUID
	outcomes map[string]string    // saga outcome by order ID; "" while open or with commands pending
	effects  map[string]int       // "<kind>/<order ID>" -> count
	// timeouts maps the IDs of the saga timeouts that fired (kept in the
	// instance's Processed list beside the event UUIDs) to their order.
	timeouts map[string]string
	pgOrders int
}

// history gathers what the run recorded, after every process stopped.
func (r *chaosRun) history(t *testing.T, prefix string) *chaosHistory {
	t.Helper()
	h := &chaosHistory{placed: map[string]placedRec{}, msgs: map[string]streamMsg{}, outcomes: map[string]string{}, effects: map[string]int{}, timeouts: map[string]string{}}
	r.mu.Lock()
	procs := slices.Clone(r.procs)
	r.mu.Unlock()
	for _, p := range procs {
		for line := range logLines(p.stdout.String()) {
			var rec map[string]any
			if json.Unmarshal(line, &rec) != nil {
				continue // a record cut by SIGKILL
			}
			str := func(k string) string { s, _ := rec[k].(string); return s }
			at, _ := time.Parse(time.RFC3339Nano, str("time"))
			switch str("msg") {
			case "message handled":
				h.handled = append(h.handled, handledRec{proc: p, at: at,
					kind: str("kind"), typ: str("message_type"), outcome: str("outcome"), uuid: str("message_uuid"),
					corr: str("correlation_id"), cause: str("causation_id"), trace: str("trace_id"), span: str("span_id"),
					handler: str("handler"), topic: str("topic")})
			case "order placed":
				h.placed[str("order_id")] = placedRec{orderID: str("order_id"), corr: str("correlation_id"), card: str("card"), at: at}
			}
		}
	}

	ctx := context.Background()
	client := r.redisClient()
	defer client.Close()
	streams, err := scanStreams(ctx, client, prefix+"*")
	if err != nil {
		t.Fatalf("listing the streams: %v", err)
	}
	var unmarshal redisstream.DefaultMarshallerUnmarshaller
	for _, s := range streams {
		entries, err := client.XRange(ctx, s, "-", "+").Result()
		if err != nil {
			t.Fatalf("XRANGE %s: %v", s, err)
		}
		for _, e := range entries {
			msg, err := unmarshal.Unmarshal(e.Values)
			if err != nil {
				t.Errorf("%s %s: %v", s, e.ID, err)
				continue
			}
			var p struct{ OrderID string }
			_ = json.Unmarshal(msg.Payload, &p)
			h.msgs[msg.UUID] = streamMsg{uuid: msg.UUID, topic: s, typ: msg.Metadata.Get("name"), orderID: p.OrderID,
				corr: msg.Metadata.Get(contract.CorrelationIDKey), cause: msg.Metadata.Get(contract.CausationIDKey)}
		}
	}

	store, err := sagas.NewRedisStore(client, sagas.RedisStoreConfig{Prefix: prefix + "saga:"})
	if err != nil {
		t.Fatal(err)
	}
	for id := range h.placed {
		inst, found, err := store.Load(ctx, sagaType, id)
		if err != nil {
			t.Fatalf("loading saga %s: %v", id, err)
		}
		if found && len(inst.Pending) == 0 {
			h.outcomes[id] = inst.Outcome
		}
		if found {
			for _, p := range inst.Processed {
				if _, isMsg := h.msgs[p]; !isMsg {
					h.timeouts[p] = id
				}
			}
		}
	}
	counts, err := client.HGetAll(ctx, prefix+effectsCountKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range counts {
		var n int
		fmt.Sscan(v, &n)
		h.effects[k] = n
	}
	if err := r.pgAdmin.QueryRow(`SELECT count(*) FROM ` + ordersTable).Scan(&h.pgOrders); err != nil {
		t.Errorf("counting the orders in PostgreSQL: %v", err)
	}
	return h
}

// redisClient is a new client of the run's Redis, direct (one server) or
// through the proxies (a cluster: its nodes announce them).
func (r *chaosRun) redisClient() redis.UniversalClient {
	if r.cluster == nil {
		return redis.NewClient(&redis.Options{Addr: r.redis.addr()})
	}
	var seeds []string
	for _, n := range r.cluster.Nodes {
		seeds = append(seeds, n.Announced)
	}
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: seeds})
}

// scanStreams lists the streams whose names match pattern: on a cluster,
// on every master.
func scanStreams(ctx context.Context, client redis.UniversalClient, pattern string) ([]string, error) {
	scan := func(ctx context.Context, c redis.Cmdable) ([]string, error) {
		var out []string
		iter := c.ScanType(ctx, 0, pattern, 200, "stream").Iterator()
		for iter.Next(ctx) {
			out = append(out, iter.Val())
		}
		return out, iter.Err()
	}
	cluster, ok := client.(*redis.ClusterClient)
	if !ok {
		return scan(ctx, client)
	}
	var (
		mu  sync.Mutex
		all []string
	)
	err := cluster.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		found, err := scan(ctx, m)
		mu.Lock()
		all = append(all, found...)
		mu.Unlock()
		return err
	})
	return all, err
}

// chaosResult is what the checker found.
type chaosResult struct {
	seed   uint64
	faults map[string]int

	orders, lost, okCompensated int
	byOutcome                   map[string]int
	pgOrders                    int
	effects                     int
	duplicateEffects            []string
	wrongEffects                []string

	handled, commands, events, queries int
	processes                          int
	unknownMessages                    []string // handled UUIDs not in any stream
	withoutCorrelation                 []string
	roots, timeoutCaused               int
	wrongCausation                     []string

	otlpEligible, otlpHops  int
	otlpMissing             []string
	otlpRequests, otlpSpans int

	sentryRequests map[string]int
	sentryEvents   int
	pgKilled       int
	proxyCuts      int

	growth []string
}

func check(h *chaosHistory, r *chaosRun) *chaosResult {
	r.mu.Lock()
	down := slices.Clone(r.otlpDown)
	r.mu.Unlock()
	res := &chaosResult{byOutcome: map[string]int{}, orders: len(h.placed), pgOrders: h.pgOrders}

	// Every order reaches a final state.
	for id, p := range h.placed {
		out := h.outcomes[id]
		switch out {
		case sagas.OutcomeCompleted, sagas.OutcomeCompensated:
			res.byOutcome[out]++
		default:
			res.lost++
			res.byOutcome["not final"]++
			continue
		}
		if p.card == cardOK && out == sagas.OutcomeCompensated {
			res.okCompensated++ // its payment came after the payment timeout
		}
		if p.card != cardOK && out != sagas.OutcomeCompensated {
			res.wrongEffects = append(res.wrongEffects, fmt.Sprintf("%s (card %s) %s", id, p.card, out))
		}
	}

	// No command takes effect twice; and each order has the effects of
	// its end.
	for k, n := range h.effects {
		res.effects += n
		if n > 1 {
			res.duplicateEffects = append(res.duplicateEffects, fmt.Sprintf("%s x%d", k, n))
		}
	}
	for id, p := range h.placed {
		e := func(kind string) int { return h.effects[kind+"/"+id] }
		var want map[string][2]int // kind -> [min, max]
		switch h.outcomes[id] {
		case sagas.OutcomeCompleted:
			want = map[string][2]int{effectReserve: {1, 1}, effectCharge: {1, 1}, effectShip: {1, 1}, effectRelease: {0, 0}}
		case sagas.OutcomeCompensated:
			charge := 0
			if p.card == cardOK {
				charge = 1 // charged after the timeout compensated: the demo does not refund
			}
			want = map[string][2]int{effectReserve: {1, 1}, effectCharge: {0, charge}, effectShip: {0, 0}, effectRelease: {1, 1}}
		}
		for _, kind := range slices.Sorted(maps.Keys(want)) {
			if n, w := e(kind), want[kind]; n < w[0] || n > w[1] {
				res.wrongEffects = append(res.wrongEffects, fmt.Sprintf("%s (%s): %s x%d", id, h.outcomes[id], kind, n))
			}
		}
	}

	// Every handled message carried its order's correlation ID; every
	// causation ID points at a message of the same order.
	procs := map[string]bool{}
	byOrder := map[string][]handledRec{}
	for _, rec := range h.handled {
		res.handled++
		procs[rec.proc.name] = true
		switch rec.kind {
		case contract.KindCommand:
			res.commands++
		case contract.KindEvent:
			res.events++
		case contract.KindQuery:
			res.queries++
		}
		m, ok := h.msgs[rec.uuid]
		if !ok {
			res.unknownMessages = append(res.unknownMessages, fmt.Sprintf("%s %s by %s", rec.typ, rec.uuid, rec.proc.name))
			continue
		}
		byOrder[m.orderID] = append(byOrder[m.orderID], rec)
		p, ok := h.placed[m.orderID]
		switch {
		case !ok:
			res.withoutCorrelation = append(res.withoutCorrelation, fmt.Sprintf("%s %s of unplaced order %q", rec.typ, rec.uuid, m.orderID))
		case rec.corr != p.corr || m.corr != p.corr:
			res.withoutCorrelation = append(res.withoutCorrelation, fmt.Sprintf("%s %s of %s: handled with %q, stream %q, want %q",
				rec.typ, rec.uuid, m.orderID, rec.corr, m.corr, p.corr))
		}
		if m.cause == "" {
			res.roots++
			if m.typ != "PlaceOrder" && m.typ != "GetOrderStatus" { // an order, a status query: new conversations of the order's
				res.wrongCausation = append(res.wrongCausation, fmt.Sprintf("%s %s of %s without a causation ID", rec.typ, rec.uuid, m.orderID))
			}
			continue
		}
		if rec.cause != m.cause {
			res.wrongCausation = append(res.wrongCausation, fmt.Sprintf("%s %s: handled with causation %q, stream %q", rec.typ, rec.uuid, rec.cause, m.cause))
		}
		parent, ok := h.msgs[m.cause]
		if order, isTimeout := h.timeouts[m.cause]; !ok && isTimeout {
			// A saga timeout caused it (the compensation of an
			// unanswered payment).
			res.timeoutCaused++
			parent, ok = streamMsg{typ: "timeout", orderID: order}, true
		}
		switch {
		case !ok:
			res.wrongCausation = append(res.wrongCausation, fmt.Sprintf("%s %s of %s: causation %s is no message", rec.typ, rec.uuid, m.orderID, m.cause))
		case parent.orderID != m.orderID:
			res.wrongCausation = append(res.wrongCausation, fmt.Sprintf("%s %s of %s: causation %s is %s of %s", rec.typ, rec.uuid, m.orderID, m.cause, parent.typ, parent.orderID))
		}
	}
	res.processes = len(procs)

	// The spans of the orders whose whole flow ran while the OTLP
	// endpoint was up (with a second of margin), none of whose hops ran in
	// a process killed within 3s after (its unexported spans die with it).
	// The status query at the end of the run is a segment of its own.
	eligible := func(first time.Time, recs []handledRec) bool {
		last := first
		for _, rec := range recs {
			if rec.at.After(last) {
				last = rec.at
			}
			if k := rec.proc.killed; !k.IsZero() && k.Sub(rec.at) < 3*time.Second {
				return false
			}
		}
		return !slices.ContainsFunc(down, func(w [2]time.Time) bool {
			return first.Before(w[1].Add(time.Second)) && last.After(w[0].Add(-time.Second))
		})
	}
	checkHops := func(id string, recs []handledRec) {
		for _, rec := range recs {
			res.otlpHops++
			s, ok := r.otlp.span(rec.span)
			if !ok || s.traceID != rec.trace {
				res.otlpMissing = append(res.otlpMissing, fmt.Sprintf("%s %s of %s by %s (span %s)", rec.typ, rec.uuid, id, rec.proc.name, rec.span))
			}
		}
	}
	for id, recs := range byOrder {
		p, ok := h.placed[id]
		if !ok {
			continue
		}
		var flow, queries []handledRec
		for _, rec := range recs {
			if rec.kind == contract.KindQuery {
				queries = append(queries, rec)
			} else {
				flow = append(flow, rec)
			}
		}
		if eligible(p.at, flow) {
			res.otlpEligible++
			checkHops(id, flow)
		}
		if len(queries) > 0 && eligible(queries[0].at, queries) {
			checkHops(id, queries)
		}
	}
	res.otlpRequests, res.otlpSpans = r.otlp.counts()
	res.sentryRequests, res.sentryEvents = r.sentry.stats()
	res.pgKilled, res.proxyCuts = r.pgKilled, r.proxyCuts
	return res
}

// checkGrowth compares the settled samples with the idle one: goroutines
// and sockets of the live workers, connections through the proxy, the
// api's PostgreSQL backends.
func checkGrowth(idle, s1, s2 sample) []string {
	var out []string
	idleMax := func(m map[string]int) int {
		n := 0
		for _, v := range m {
			n = max(n, v)
		}
		return n
	}
	gIdle, sIdle := idleMax(idle.goroutines), idleMax(idle.sockets)
	for name, g := range s2.goroutines {
		// Settled, a count moves by a few goroutines (HTTP connections of
		// the exporters and of the scrape opening and closing; up to 6
		// seen 5 s apart with no load), so only more than that is growth;
		// the bound against the idle worker below catches a slow leak.
		if g1, ok := s1.goroutines[name]; ok && g > g1+8 {
			out = append(out, fmt.Sprintf("%s: goroutines grew from %d to %d while settled", name, g1, g))
		}
		// A worker holds what an idle one does plus the HTTP connections
		// its exporters opened meanwhile (a few goroutines each).
		if g > gIdle+12 {
			out = append(out, fmt.Sprintf("%s: %d goroutines settled, an idle worker had %d", name, g, gIdle))
		}
	}
	for name, n := range s2.sockets {
		// The Redis pool redials lazily the connections the proxy cut
		// (up to 3 seen 5 s apart), so only more than that is growth.
		if n1, ok := s1.sockets[name]; ok && n > n1+4 {
			out = append(out, fmt.Sprintf("%s: sockets grew from %d to %d while settled", name, n1, n))
		}
		// Beyond the idle worker's: the Redis pool (20 connections on two
		// cores) and the OTLP and Sentry clients.
		if n > sIdle+24 {
			out = append(out, fmt.Sprintf("%s: %d sockets settled, an idle worker had %d", name, n, sIdle))
		}
	}
	// The same allowance as each worker's sockets, summed: after a
	// failover every worker's cluster client may still open a connection or
	// two to the rejoined node; a leak keeps growing past that.
	if s2.proxied > s1.proxied+2*max(len(s2.sockets), 1) {
		out = append(out, fmt.Sprintf("connections to Redis grew from %d to %d while settled", s1.proxied, s2.proxied))
	}
	if s2.pgBackends != 0 {
		out = append(out, fmt.Sprintf("%d PostgreSQL backends of the api left after it exited", s2.pgBackends))
	}
	return out
}

func (res *chaosResult) failures() []string {
	var out []string
	add := func(what string, list []string) {
		if len(list) > 0 {
			out = append(out, fmt.Sprintf("%d %s, e.g.:\n  %s", len(list), what, strings.Join(list[:min(len(list), 10)], "\n  ")))
		}
	}
	if res.lost > 0 {
		out = append(out, fmt.Sprintf("%d of %d orders lost (not final)", res.lost, res.orders))
	}
	if res.pgOrders != res.orders {
		out = append(out, fmt.Sprintf("%d order rows in PostgreSQL, want %d", res.pgOrders, res.orders))
	}
	add("duplicate effects", res.duplicateEffects)
	add("wrong effects", res.wrongEffects)
	add("handled messages not in any stream", res.unknownMessages)
	add("messages without their correlation ID", res.withoutCorrelation)
	add("wrong causation links", res.wrongCausation)
	add("hops without their span at the OTLP receiver", res.otlpMissing)
	add("growth", res.growth)
	if res.otlpEligible == 0 {
		out = append(out, "no order ran wholly while the OTLP endpoint was up: the span check checked nothing")
	}
	return out
}

func (res *chaosResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos seed %d, faults %v\n", res.seed, res.faults)
	fmt.Fprintf(&b, "  orders %d: %v, %d lost, %d ok-card orders compensated (payment after the timeout); %d rows in PostgreSQL\n",
		res.orders, res.byOutcome, res.lost, res.okCompensated, res.pgOrders)
	fmt.Fprintf(&b, "  effects %d: %d duplicate, %d wrong\n", res.effects, len(res.duplicateEffects), len(res.wrongEffects))
	fmt.Fprintf(&b, "  handled %d (%d commands, %d events, %d queries) in %d processes: %d not in a stream, %d without their correlation ID, %d roots, %d caused by a saga timeout, %d wrong causation links\n",
		res.handled, res.commands, res.events, res.queries, res.processes, len(res.unknownMessages), len(res.withoutCorrelation), res.roots, res.timeoutCaused, len(res.wrongCausation))
	fmt.Fprintf(&b, "  OTLP: %d requests, %d spans; %d orders wholly while up, %d hops, %d spans missing\n",
		res.otlpRequests, res.otlpSpans, res.otlpEligible, res.otlpHops, len(res.otlpMissing))
	fmt.Fprintf(&b, "  Sentry requests by mode %v, %d events accepted; %d PostgreSQL backends terminated; %d Redis connections cut\n",
		res.sentryRequests, res.sentryEvents, res.pgKilled, res.proxyCuts)
	fmt.Fprintf(&b, "  growth once settled: %d findings", len(res.growth))
	return b.String()
}

// TestChaosChecker feeds the checker a small history, first right, then
// with each fault it must catch: a checker that never fails checks
// nothing.
func TestChaosChecker(t *testing.T) {
	const corr, other = "c0000000-0000-4000-8000-000000000001", "c0000000-0000-4000-8000-000000000002"
	worker := &chaosProc{name: "worker-aaaaaa"}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	build := func() (*chaosHistory, *chaosRun) {
		h := &chaosHistory{
			placed:   map[string]placedRec{"o1": {orderID: "o1", corr: corr, card: cardOK, at: at}},
			msgs:     map[string]streamMsg{},
			outcomes: map[string]string{"o1": sagas.OutcomeCompleted},
			effects:  map[string]int{"reserve/o1": 1, "charge/o1": 1, "ship/o1": 1},
			timeouts: map[string]string{},
			pgOrders: 1,
		}
		r := &chaosRun{otlp: &otlpReceiver{spans: map[string]otlpSpan{}}, sentry: &fakeSentry{requests: map[string]int{}}}
		chain := []struct{ uuid, typ, kind string }{
			{"m1", "PlaceOrder", contract.KindCommand}, {"m2", "OrderPlaced", contract.KindEvent},
			{"m3", "ReserveStock", contract.KindCommand}, {"m4", "StockReserved", contract.KindEvent},
		}
		for i, c := range chain {
			cause := ""
			if i > 0 {
				cause = chain[i-1].uuid
			}
			h.msgs[c.uuid] = streamMsg{uuid: c.uuid, typ: c.typ, orderID: "o1", corr: corr, cause: cause}
			span := fmt.Sprintf("%016x", i+1)
			h.handled = append(h.handled, handledRec{proc: worker, at: at.Add(time.Duration(i) * time.Millisecond),
				kind: c.kind, typ: c.typ, uuid: c.uuid, corr: corr, cause: cause, trace: "t1", span: span})
			r.otlp.spans[span] = otlpSpan{traceID: "t1", spanID: span}
		}
		return h, r
	}
	if h, r := build(); len(check(h, r).failures()) != 0 {
		t.Fatalf("a right history fails: %v", check(h, r).failures())
	}
	for _, tc := range []struct {
		name   string
		break_ func(h *chaosHistory, r *chaosRun)
		caught func(res *chaosResult) bool
	}{
		{"lost order", func(h *chaosHistory, _ *chaosRun) { delete(h.outcomes, "o1") },
			func(res *chaosResult) bool { return res.lost == 1 }},
		{"charged twice", func(h *chaosHistory, _ *chaosRun) { h.effects["charge/o1"] = 2 },
			func(res *chaosResult) bool { return len(res.duplicateEffects) == 1 }},
		{"shipped without being completed", func(h *chaosHistory, _ *chaosRun) { h.outcomes["o1"] = sagas.OutcomeCompensated },
			func(res *chaosResult) bool { return len(res.wrongEffects) > 0 }},
		{"another order's correlation ID", func(h *chaosHistory, _ *chaosRun) { h.handled[2].corr = other },
			func(res *chaosResult) bool { return len(res.withoutCorrelation) == 1 }},
		{"no correlation ID in the stream", func(h *chaosHistory, _ *chaosRun) { m := h.msgs["m3"]; m.corr = ""; h.msgs["m3"] = m },
			func(res *chaosResult) bool { return len(res.withoutCorrelation) == 1 }},
		{"causation at another order", func(h *chaosHistory, _ *chaosRun) {
			h.msgs["x"] = streamMsg{uuid: "x", typ: "OrderPlaced", orderID: "o2"}
			m := h.msgs["m3"]
			m.cause = "x"
			h.msgs["m3"] = m
			h.handled[2].cause = "x"
		}, func(res *chaosResult) bool { return len(res.wrongCausation) == 1 }},
		{"causation at nothing", func(h *chaosHistory, _ *chaosRun) {
			m := h.msgs["m4"]
			m.cause = "nothing"
			h.msgs["m4"] = m
			h.handled[3].cause = "nothing"
		}, func(res *chaosResult) bool { return len(res.wrongCausation) == 1 }},
		{"an event without a causation ID", func(h *chaosHistory, _ *chaosRun) {
			m := h.msgs["m2"]
			m.cause = ""
			h.msgs["m2"] = m
			h.handled[1].cause = ""
		}, func(res *chaosResult) bool { return len(res.wrongCausation) == 1 }},
		{"a span missing", func(_ *chaosHistory, r *chaosRun) { delete(r.otlp.spans, fmt.Sprintf("%016x", 2)) },
			func(res *chaosResult) bool { return len(res.otlpMissing) == 1 }},
		{"a hop in an outage is not asked for", func(_ *chaosHistory, r *chaosRun) {
			delete(r.otlp.spans, fmt.Sprintf("%016x", 2))
			r.otlpDown = [][2]time.Time{{at.Add(-time.Second), at}}
		}, func(res *chaosResult) bool { return len(res.otlpMissing) == 0 && res.otlpEligible == 0 }},
	} {
		h, r := build()
		tc.break_(h, r)
		res := check(h, r)
		if !tc.caught(res) {
			t.Errorf("%s: not caught:\n%s\nfailures %v", tc.name, res, res.failures())
		}
	}
}
