package projections

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// MemoryStore is a [Store] and [Leaser] in memory, for tests and demos: a
// commit is atomic within the process. Each commit runs the hook operation
// checkpoint.save.{projection} (attributes projection_name, position).
// The zero value is not usable; call [NewMemoryStore].
type MemoryStore struct {
	mu    sync.Mutex
	parts map[Partition]*memoryPartition
	// members maps projection and member to the end of its heartbeat.
	members map[string]map[string]time.Time
	// active and reserved are the active and the last reserved
	// generation of each projection.
	active, reserved map[string]int64
	now              func() time.Time
}

type memoryPartition struct {
	cp          Checkpoint
	hashes      map[string]map[string]string
	deadLetters []DeadLetter
	lease       string
	leaseEnd    time.Time
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{parts: make(map[Partition]*memoryPartition), members: make(map[string]map[string]time.Time),
		active: make(map[string]int64), reserved: make(map[string]int64), now: time.Now}
}

func (s *MemoryStore) part(p Partition) *memoryPartition {
	mp := s.parts[p]
	if mp == nil {
		mp = &memoryPartition{cp: Checkpoint{}, hashes: make(map[string]map[string]string)}
		s.parts[p] = mp
	}
	return mp
}

// Load implements [Store].
func (s *MemoryStore) Load(_ context.Context, p Partition) (Checkpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.part(p).cp), nil
}

// Commit implements [Store].
func (s *MemoryStore) Commit(ctx context.Context, c Commit) error {
	attrs := checkpointAttrs(c)
	return contract.RunHooks(ctx, hooks.FromContext(ctx), "checkpoint.save."+c.Partition.Projection, attrs,
		func(context.Context) error { return s.commit(c) }, reportHookPanic(nil))
}

func (s *MemoryStore) commit(c Commit) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	mp := s.part(c.Partition)
	if c.Lease != "" && (mp.lease != c.Lease || !s.now().Before(mp.leaseEnd)) {
		return ErrFenced
	}
	if !positionsEqual(mp.cp, c.From) {
		return ErrConflict
	}
	for _, w := range c.Writes {
		h := mp.hashes[w.Hash]
		if h == nil {
			h = make(map[string]string)
			mp.hashes[w.Hash] = h
		}
		switch w.Op {
		case OpSet:
			h[w.Field] = w.Value
		case OpIncr:
			n, _ := strconv.ParseInt(h[w.Field], 10, 64)
			h[w.Field] = strconv.FormatInt(n+w.Delta, 10)
		case OpDelete:
			delete(h, w.Field)
		}
	}
	mp.deadLetters = append(mp.deadLetters, c.DeadLetters...)
	maps.Copy(mp.cp, c.To)
	return nil
}

// Hash implements [Store].
func (s *MemoryStore) Hash(_ context.Context, p Partition, hash string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.part(p).hashes[hash]), nil
}

// DeadLetters implements [Store].
func (s *MemoryStore) DeadLetters(_ context.Context, p Partition) ([]DeadLetter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.part(p).deadLetters), nil
}

// Acquire implements [Leaser].
func (s *MemoryStore) Acquire(_ context.Context, p Partition, token string, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mp, now := s.part(p), s.now()
	if mp.lease != "" && mp.lease != token && now.Before(mp.leaseEnd) {
		return false, nil
	}
	mp.lease, mp.leaseEnd = token, now.Add(ttl)
	return true, nil
}

// Renew implements [Leaser].
func (s *MemoryStore) Renew(_ context.Context, p Partition, token string, ttl time.Duration) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	mp, now := s.part(p), s.now()
	if mp.lease != token || !now.Before(mp.leaseEnd) {
		return false, nil
	}
	mp.leaseEnd = now.Add(ttl)
	return true, nil
}

// Release implements [Leaser].
func (s *MemoryStore) Release(_ context.Context, p Partition, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mp := s.part(p); mp.lease == token {
		mp.lease = ""
	}
	return nil
}

// Heartbeat implements [Leaser].
func (s *MemoryStore) Heartbeat(_ context.Context, projection, member string, ttl time.Duration) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	m := s.members[projection]
	if m == nil {
		m = make(map[string]time.Time)
		s.members[projection] = m
	}
	m[member] = now.Add(ttl)
	maps.DeleteFunc(m, func(_ string, end time.Time) bool { return !now.Before(end) })
	return len(m), nil
}

// Generation implements [Store].
func (s *MemoryStore) Generation(_ context.Context, projection string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[projection], nil
}

// NewGeneration implements [Store].
func (s *MemoryStore) NewGeneration(_ context.Context, projection string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reserved[projection] = max(s.reserved[projection], s.active[projection]) + 1
	return s.reserved[projection], nil
}

// Swap implements [Store].
func (s *MemoryStore) Swap(_ context.Context, projection string, from, to int64) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active[projection] != from {
		return false, nil
	}
	s.active[projection] = to
	return true, nil
}

// Drop implements [Store].
func (s *MemoryStore) Drop(_ context.Context, p Partition) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.parts, p)
	return nil
}
