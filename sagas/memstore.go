package sagas

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"
)

// defaultHistoryLimit bounds an instance's history when a SaveRequest does
// not say (HistoryLimit 0).
const defaultHistoryLimit = 100

// MemoryStore is an in-memory [Store] for unit tests and embedded demos. It
// keeps everything in one process behind one mutex, so it shares instances
// between managers of that process only. Values go in and out as deep
// copies: a caller that changes what it saved or loaded changes nothing in
// the store. The zero value is not usable; call [NewMemoryStore].
type MemoryStore struct {
	mu        sync.Mutex
	instances map[memKey]*memInstance
	locks     map[memKey]memLock
	now       func() time.Time
}

type memKey struct{ typ, id string }

type memInstance struct {
	inst    Instance
	history []StepRecord
}

type memLock struct {
	token   string
	expires time.Time
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{
		instances: make(map[memKey]*memInstance),
		locks:     make(map[memKey]memLock),
		now:       time.Now,
	}
}

var _ Store = (*MemoryStore)(nil)

// Load implements [Store.Load].
func (s *MemoryStore) Load(ctx context.Context, sagaType, id string) (Instance, bool, error) {
	if err := ctx.Err(); err != nil {
		return Instance{}, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mi, ok := s.instances[memKey{sagaType, id}]
	if !ok {
		return Instance{}, false, nil
	}
	return copyInstance(mi.inst), true, nil
}

// Save implements [Store.Save].
func (s *MemoryStore) Save(ctx context.Context, req SaveRequest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	in := req.Instance
	if in.Version != req.Expected+1 {
		return fmt.Errorf("sagas: cannot save %s %s: version %d after %d, want %d", in.Type, in.ID, in.Version, req.Expected, req.Expected+1)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := memKey{in.Type, in.ID}
	mi, ok := s.instances[key]
	var stored int64
	if ok {
		stored = mi.inst.Version
	}
	if stored != req.Expected {
		return ErrConflict
	}
	if !ok {
		mi = &memInstance{}
		s.instances[key] = mi
	}
	mi.inst = copyInstance(in)
	limit := req.HistoryLimit
	if limit <= 0 {
		limit = defaultHistoryLimit
	}
	mi.history = append(mi.history, copyRecord(req.Record))
	if n := len(mi.history); n > limit {
		mi.history = slices.Clone(mi.history[n-limit:])
	}
	return nil
}

// MarkSent implements [Store.MarkSent].
func (s *MemoryStore) MarkSent(ctx context.Context, sagaType, id string, uuids []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mi, ok := s.instances[memKey{sagaType, id}]
	if !ok {
		return nil
	}
	mi.inst.Pending = slices.DeleteFunc(mi.inst.Pending, func(p PendingMessage) bool {
		return slices.Contains(uuids, p.UUID)
	})
	if len(mi.inst.Pending) == 0 {
		mi.inst.Pending = nil
	}
	return nil
}

// History implements [Store.History].
func (s *MemoryStore) History(ctx context.Context, sagaType, id string) ([]StepRecord, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mi, ok := s.instances[memKey{sagaType, id}]
	if !ok {
		return nil, nil
	}
	out := make([]StepRecord, len(mi.history))
	for i, r := range mi.history {
		out[i] = copyRecord(r)
	}
	return out, nil
}

// WithPending implements [Store.WithPending]. IDs come in sorted order.
func (s *MemoryStore) WithPending(ctx context.Context, sagaType string, limit int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for k, mi := range s.instances {
		if k.typ == sagaType && len(mi.inst.Pending) > 0 {
			ids = append(ids, k.id)
		}
	}
	sort.Strings(ids)
	if limit > 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	return ids, nil
}

// DueTimeouts implements [Store.DueTimeouts].
func (s *MemoryStore) DueTimeouts(ctx context.Context, sagaType string, now time.Time, limit int) ([]DueTimeout, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []DueTimeout
	for k, mi := range s.instances {
		if k.typ != sagaType {
			continue
		}
		for _, t := range mi.inst.Timeouts {
			if !t.Due.After(now) {
				due = append(due, DueTimeout{Type: k.typ, ID: k.id, TimeoutID: t.ID, Due: t.Due})
			}
		}
	}
	sort.Slice(due, func(i, j int) bool {
		if !due[i].Due.Equal(due[j].Due) {
			return due[i].Due.Before(due[j].Due)
		}
		if due[i].ID != due[j].ID {
			return due[i].ID < due[j].ID
		}
		return due[i].TimeoutID < due[j].TimeoutID
	})
	if limit > 0 && len(due) > limit {
		due = due[:limit]
	}
	return due, nil
}

// Active implements [Store.Active].
func (s *MemoryStore) Active(ctx context.Context, sagaType string) (int64, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return 0, time.Time{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		n      int64
		oldest time.Time
	)
	for k, mi := range s.instances {
		if k.typ != sagaType || mi.inst.Outcome != "" {
			continue
		}
		n++
		if oldest.IsZero() || mi.inst.StartedAt.Before(oldest) {
			oldest = mi.inst.StartedAt
		}
	}
	return n, oldest, nil
}

// TryLock implements [Store.TryLock]. A lock whose ttl has passed is free.
func (s *MemoryStore) TryLock(ctx context.Context, sagaType, id, token string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := memKey{sagaType, id}
	now := s.now()
	if l, ok := s.locks[key]; ok && now.Before(l.expires) {
		return false, nil
	}
	s.locks[key] = memLock{token: token, expires: now.Add(ttl)}
	return true, nil
}

// Unlock implements [Store.Unlock].
func (s *MemoryStore) Unlock(ctx context.Context, sagaType, id, token string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := memKey{sagaType, id}
	l, ok := s.locks[key]
	if !ok || l.token != token || !s.now().Before(l.expires) {
		return false, nil
	}
	delete(s.locks, key)
	return true, nil
}

// copyInstance returns a deep copy of in.
func copyInstance(in Instance) Instance {
	out := in
	out.State = slices.Clone(in.State)
	out.Processed = slices.Clone(in.Processed)
	if in.Pending != nil {
		out.Pending = make([]PendingMessage, len(in.Pending))
		for i, p := range in.Pending {
			out.Pending[i] = PendingMessage{UUID: p.UUID, Topic: p.Topic, Metadata: maps.Clone(p.Metadata), Payload: slices.Clone(p.Payload)}
		}
	}
	if in.Timeouts != nil {
		out.Timeouts = make([]Timeout, len(in.Timeouts))
		for i, t := range in.Timeouts {
			t.Trace = maps.Clone(t.Trace)
			out.Timeouts[i] = t
		}
	}
	return out
}

// copyRecord returns a deep copy of r.
func copyRecord(r StepRecord) StepRecord {
	r.Commands = slices.Clone(r.Commands)
	return r
}
