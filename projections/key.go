package projections

import "hash/fnv"

// A KeyFunc returns the partition key of an event, such as its aggregate
// ID: events with equal keys go to the same partition and are applied in
// stream order. It must be deterministic and safe for concurrent use.
type KeyFunc func(Event) string

// MetadataKey returns a KeyFunc that reads the metadata value key of an
// event (for example an aggregate ID the publisher stamps). No key of the
// metadata contract names an aggregate, so the application chooses one.
// Events without it share the key "".
func MetadataKey(key string) KeyFunc {
	return func(ev Event) string { return ev.Metadata.Get(key) }
}

// PartitionOf returns the partition, of n, that key belongs to: FNV-1a of
// the key modulo n. Writers that route by partition use it too.
func PartitionOf(key string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}
