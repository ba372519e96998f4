package hooks

import (
	"strings"
	"sync"
	"sync/atomic"
)

// maxCachedNames bounds each match cache. Names past it are matched on every
// call: still correct, just slower, and only reached by programs that put
// unbounded values (IDs) into operation names.
const maxCachedNames = 4096

// cacheEntry lists the registrations whose patterns match one name.
type cacheEntry struct {
	name string
	regs []*Registration
}

// noMatch is shared by every name that no registration matches, so that
// uncached misses do not allocate.
var noMatch = &cacheEntry{}

// matchCache maps names to their cacheEntry. Reads go to an immutable map
// behind an atomic pointer; new names collect in a locked dirty map that is
// merged into a fresh read map once it holds a quarter as many names, so the
// copying costs O(1) amortized per name.
type matchCache struct {
	// recent is a direct-mapped front for the map, indexed by a few bytes of
	// the name and checked by comparing the name, so the names of a hot path
	// skip hashing the whole string.
	recent [recentSlots]atomic.Pointer[cacheEntry]
	read   atomic.Pointer[map[string]*cacheEntry]
	mu     sync.Mutex
	dirty  map[string]*cacheEntry
	size   int // names in read + dirty
}

// lookup returns the entry for name, computing and caching it on a miss.
// name does not escape: entries keep a copy.
func (c *matchCache) lookup(regs []*Registration, name string, prefix bool) *cacheEntry {
	slot := &c.recent[recentIndex(name)]
	if e := slot.Load(); e != nil && e.name == name {
		return e
	}
	if m := c.read.Load(); m != nil {
		if e, ok := (*m)[name]; ok {
			slot.Store(e)
			return e
		}
	}
	e := c.miss(regs, name, prefix)
	if e != noMatch {
		slot.Store(e)
	}
	return e
}

const recentSlots = 128

// recentIndex hashes the length and three bytes of name: cheap, and enough
// to spread the handful of operation families a program uses.
func recentIndex(name string) int {
	n := len(name)
	if n == 0 {
		return 0
	}
	h := uint(n)*31 + uint(name[0])*17 + uint(name[n/2])*7 + uint(name[n-1])
	return int(h % recentSlots)
}

func (c *matchCache) miss(regs []*Registration, name string, prefix bool) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.dirty[name]; ok {
		return e
	}
	var matched []*Registration
	for _, g := range regs {
		if (prefix && g.matchesPrefix(name)) || (!prefix && g.matches(name)) {
			matched = append(matched, g)
		}
	}
	if c.size >= maxCachedNames {
		if len(matched) == 0 {
			return noMatch
		}
		return &cacheEntry{name: strings.Clone(name), regs: matched}
	}
	e := &cacheEntry{name: strings.Clone(name), regs: matched}
	if c.dirty == nil {
		c.dirty = make(map[string]*cacheEntry)
	}
	c.dirty[e.name] = e
	c.size++
	var read map[string]*cacheEntry
	if m := c.read.Load(); m != nil {
		read = *m
	}
	if len(c.dirty) >= max(1, len(read)/4) {
		merged := make(map[string]*cacheEntry, len(read)+len(c.dirty))
		for k, v := range read {
			merged[k] = v
		}
		for k, v := range c.dirty {
			merged[k] = v
		}
		c.read.Store(&merged)
		c.dirty = nil
	}
	return e
}
