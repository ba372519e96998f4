package projections_test

import (
	"strings"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/projections"
)

func TestNewWorker_validates_the_config(t *testing.T) {
	valid := func() projections.Config {
		return projections.Config{
			Projection: sumProjection("valid"),
			Streams:    []string{"events"},
			Source:     projections.NewMemoryLog(),
			Store:      projections.NewMemoryStore(),
		}
	}
	for _, tc := range []struct {
		name    string
		modify  func(*projections.Config)
		wantErr string
	}{
		{"valid", func(*projections.Config) {}, ""},
		{"missing projection", func(c *projections.Config) { c.Projection = nil }, "missing Projection"},
		{"bad name", func(c *projections.Config) { c.Projection = sumProjection("a{b}") }, "invalid projection name"},
		{"no streams", func(c *projections.Config) { c.Streams = nil }, "missing Streams"},
		{"repeated stream", func(c *projections.Config) { c.Streams = []string{"a", "a"} }, "repeated stream"},
		{"missing source", func(c *projections.Config) { c.Source = nil }, "missing Source"},
		{"missing store", func(c *projections.Config) { c.Store = nil }, "missing Store"},
		{"partitions without key", func(c *projections.Config) { c.Partitions = 4 }, "missing Key"},
		{"too many partitions", func(c *projections.Config) { c.Partitions = 5000; c.Key = projections.MetadataKey("k") }, "invalid Partitions"},
		{"negative batch", func(c *projections.Config) { c.BatchSize = -1 }, "negative"},
		{"unknown policy", func(c *projections.Config) { c.Poison = 9 }, "unknown Poison"},
		{"every problem", func(c *projections.Config) { c.Source, c.Store = nil, nil }, "missing Source\nmissing Store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.modify(&cfg)
			_, err := projections.NewWorker(cfg)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("NewWorker: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "invalid config")):
				t.Fatalf("NewWorker = %v, want an invalid config error with %q", err, tc.wantErr)
			}
		})
	}
}

func TestPartitionOf_spreads_keys(t *testing.T) {
	counts := make([]int, 4)
	for i := range 4000 {
		counts[projections.PartitionOf("acct-"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+itoa(i), 4)]++
	}
	for p, n := range counts {
		if n < 800 || n > 1200 {
			t.Fatalf("partition %d got %d of 4000 keys: %v", p, n, counts)
		}
	}
	if projections.PartitionOf("anything", 1) != 0 {
		t.Fatal("one partition: want 0")
	}
}
