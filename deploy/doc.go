// Package deploy holds the observability stack of the order-flow demo: a
// docker-compose.yml with Jaeger, the OpenTelemetry Collector, Prometheus,
// Loki, Grafana Alloy and Grafana, and their configuration (see README.md in
// this directory).
//
// It has no Go API. Its tests check the configuration without Docker:
// promtool validates the Prometheus configuration, the alerting rules and
// their unit tests, and the PromQL of the Grafana dashboard; the tests also
// check that every metric the rules and the dashboard use is one that
// package watermillobs/promobs exports, that every datasource a panel names
// is provisioned, and that the services the configurations point at exist
// in the compose file. promtool comes from Debian's prometheus package:
// scripts/install-prometheus.sh installs it.
package deploy
