package deploy

import (
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type composeService struct {
	Image       string            `yaml:"image"`
	Build       any               `yaml:"build"`
	Command     any               `yaml:"command"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	Profiles    []string          `yaml:"profiles"`
	Environment map[string]string `yaml:"environment"`
	ExtraHosts  []string          `yaml:"extra_hosts"`
	DependsOn   []string          `yaml:"depends_on"`
}

func composeServices(t *testing.T) map[string]composeService {
	t.Helper()
	var c struct {
		Services map[string]composeService `yaml:"services"`
	}
	readYAML(t, composeFile, &c)
	if len(c.Services) == 0 {
		t.Fatalf("%s has no services", composeFile)
	}
	return c.Services
}

// commandArgs returns a service's command as a list, whether written as a
// list or a string.
func commandArgs(s composeService) []string {
	switch c := s.Command.(type) {
	case string:
		return strings.Fields(c)
	case []any:
		var out []string
		for _, a := range c {
			if s, ok := a.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// mountTarget returns where a bind mount of source (relative to this
// directory) lands in service s, or "".
func mountTarget(s composeService, source string) string {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && filepath.Clean(parts[0]) == filepath.Clean(source) {
			return parts[1]
		}
	}
	return ""
}

// TestComposeServices checks the compose file: the six services of the
// stack run by default with pinned images (Jaeger v2, not the v1
// all-in-one; Alloy, not the retired Promtail), the demo and its Redis only
// with the demo profile, every bind-mounted file exists, every
// depends_on names a service, and Prometheus keeps exemplars.
func TestComposeServices(t *testing.T) {
	services := composeServices(t)
	wantImages := map[string]string{
		"jaeger":         "jaegertracing/jaeger:2.",
		"otel-collector": "otel/opentelemetry-collector-contrib:",
		"prometheus":     "prom/prometheus:",
		"loki":           "grafana/loki:",
		"alloy":          "grafana/alloy:",
		"grafana":        "grafana/grafana:",
	}
	for name, prefix := range wantImages {
		s, ok := services[name]
		if !ok {
			t.Errorf("%s has no service %s", composeFile, name)
			continue
		}
		if !strings.HasPrefix(s.Image, prefix) || strings.HasSuffix(s.Image, ":latest") {
			t.Errorf("service %s runs image %q, want a pinned %s...", name, s.Image, prefix)
		}
		if len(s.Profiles) > 0 {
			t.Errorf("service %s is part of the stack but only starts with profiles %v", name, s.Profiles)
		}
	}
	for name, s := range services {
		if strings.Contains(s.Image, "promtail") {
			t.Errorf("service %s runs Promtail, which is end-of-life: Alloy ships the logs", name)
		}
		if _, stack := wantImages[name]; !stack && !slices.Contains(s.Profiles, "demo") {
			t.Errorf("service %s is not part of the stack and should start only with --profile demo", name)
		}
		for _, v := range s.Volumes {
			src := strings.Split(v, ":")[0]
			if strings.HasPrefix(src, ".") {
				mustExist(t, src)
			}
		}
		for _, dep := range s.DependsOn {
			if _, ok := services[dep]; !ok {
				t.Errorf("service %s depends on %s, which is not defined", name, dep)
			}
		}
	}
	if args := commandArgs(services["prometheus"]); !slices.Contains(args, "--enable-feature=exemplar-storage") {
		t.Errorf("prometheus runs without --enable-feature=exemplar-storage: %v", args)
	}
	if got := mountTarget(services["prometheus"], "./prometheus"); got != "/etc/prometheus" {
		t.Errorf("deploy/prometheus is mounted on %q, want /etc/prometheus (prometheus.yml loads alerts.yml beside it)", got)
	}
	if demo, ok := services["orderflow"]; ok {
		if demo.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"] != "http://otel-collector:4318" {
			t.Errorf("the demo service exports to %q, want http://otel-collector:4318", demo.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
		}
		if !slices.Contains(demo.Ports, "2112:2112") {
			t.Errorf("the demo service does not publish port 2112, where Prometheus scrapes it: %v", demo.Ports)
		}
		if mountTarget(demo, "./logs") != mountTarget(services["alloy"], "./logs") {
			t.Errorf("the demo service writes its logs (deploy/logs) to %q, Alloy reads them from %q",
				mountTarget(demo, "./logs"), mountTarget(services["alloy"], "./logs"))
		}
		mustExist(t, "orderflow/Dockerfile")
	}
	mustExist(t, "logs/.gitignore")
}

// hostOf returns the host of a URL or of a host:port endpoint.
func hostOf(t *testing.T, endpoint string) string {
	t.Helper()
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil {
			t.Fatalf("cannot parse %q: %v", endpoint, err)
		}
		return u.Hostname()
	}
	host, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		t.Fatalf("cannot parse %q: %v", endpoint, err)
	}
	return host
}

// TestConfigsPointAtComposeServices checks that each address the
// configurations send to (Grafana's datasources, the collector's exporter,
// Alloy's Loki) is a service of the compose file, and that Grafana's
// dashboard provider reads where compose mounts the dashboards.
func TestConfigsPointAtComposeServices(t *testing.T) {
	services := composeServices(t)
	want := func(where, endpoint string) {
		t.Helper()
		host := hostOf(t, endpoint)
		if _, ok := services[host]; !ok {
			t.Errorf("%s points at %s (host %q), which is not a service of %s", where, endpoint, host, composeFile)
		}
	}
	_, ds := datasources(t)
	for _, d := range ds.Datasources {
		want("datasource "+d.Name, d.URL)
	}
	c := collector(t)
	for name, e := range c.Exporters {
		if endpoint, _ := e["endpoint"].(string); endpoint != "" {
			want("collector exporter "+name, endpoint)
		}
	}
	for _, u := range alloyURLs(t) {
		want("alloy", u)
	}

	var provider struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, dashboardProvider, &provider)
	mounted := mountTarget(services["grafana"], "./grafana/dashboards")
	if len(provider.Providers) != 1 || provider.Providers[0].Options.Path != mounted {
		t.Errorf("the dashboard provider reads %+v; compose mounts the dashboards on %q", provider.Providers, mounted)
	}
	if home := services["grafana"].Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != mounted+"/"+filepath.Base(dashboardFile) {
		t.Errorf("Grafana's home dashboard is %q, not the mounted %s", home, dashboardFile)
	}
}
