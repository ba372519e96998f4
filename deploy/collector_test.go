package deploy

import (
	"strings"
	"testing"
)

type collectorConfig struct {
	Receivers  map[string]map[string]any `yaml:"receivers"`
	Processors map[string]map[string]any `yaml:"processors"`
	Exporters  map[string]map[string]any `yaml:"exporters"`
	Extensions map[string]map[string]any `yaml:"extensions"`
	Service    struct {
		Extensions []string `yaml:"extensions"`
		Pipelines  map[string]struct {
			Receivers  []string `yaml:"receivers"`
			Processors []string `yaml:"processors"`
			Exporters  []string `yaml:"exporters"`
		} `yaml:"pipelines"`
	} `yaml:"service"`
}

func collector(t *testing.T) collectorConfig {
	t.Helper()
	var c collectorConfig
	readYAML(t, collectorFile, &c)
	return c
}

// TestCollectorConfig checks the OpenTelemetry Collector's configuration as
// the collector would before starting: every component a pipeline names is
// defined; and that the traces pipeline receives OTLP over gRPC and HTTP,
// batches, and exports to Jaeger over OTLP.
func TestCollectorConfig(t *testing.T) {
	c := collector(t)
	defined := func(kind string, set map[string]map[string]any, names []string) {
		for _, n := range names {
			if _, ok := set[n]; !ok {
				t.Errorf("the service uses %s %q, which is not defined", kind, n)
			}
		}
	}
	defined("extension", c.Extensions, c.Service.Extensions)
	traces, ok := c.Service.Pipelines["traces"]
	if !ok {
		t.Fatalf("no traces pipeline: %+v", c.Service.Pipelines)
	}
	for name, p := range c.Service.Pipelines {
		if len(p.Receivers) == 0 || len(p.Exporters) == 0 {
			t.Errorf("pipeline %s needs receivers and exporters: %+v", name, p)
		}
		defined("receiver", c.Receivers, p.Receivers)
		defined("processor", c.Processors, p.Processors)
		defined("exporter", c.Exporters, p.Exporters)
	}
	otlp, _ := c.Receivers["otlp"]["protocols"].(map[string]any)
	for _, proto := range []string{"grpc", "http"} {
		if _, ok := otlp[proto]; !ok {
			t.Errorf("the otlp receiver does not accept %s", proto)
		}
	}
	hasBatch := false
	for _, p := range traces.Processors {
		hasBatch = hasBatch || p == "batch" || strings.HasPrefix(p, "batch/")
	}
	if !hasBatch {
		t.Errorf("the traces pipeline does not batch: %v", traces.Processors)
	}
	if len(traces.Processors) > 0 && traces.Processors[0] != "memory_limiter" && c.Processors["memory_limiter"] != nil {
		t.Errorf("memory_limiter must be the first processor: %v", traces.Processors)
	}
	toJaeger := false
	for _, e := range traces.Exporters {
		endpoint, _ := c.Exporters[e]["endpoint"].(string)
		if (e == "otlp" || strings.HasPrefix(e, "otlp/")) && endpoint == "jaeger:4317" {
			toJaeger = true
		}
	}
	if !toJaeger {
		t.Errorf("the traces pipeline does not export OTLP to jaeger:4317: %v", traces.Exporters)
	}
}
