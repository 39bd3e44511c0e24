// Package deploy holds bevygap's production deployment files and the test that proves them:
//
//   - compose.yaml: a 3-node NATS cluster with JetStream, two matchmakers, the HTTP front door,
//     the webhook sink and the Edgegap simulator, all from the repository's Dockerfile;
//   - nats/nats.conf: the cluster configuration; nats/auth.conf: one NATS user per role
//     (matchmaker, httpd, webhook sink, Go game server, Rust game server) with least-privilege
//     permissions, each reading replies only on its own inbox prefix (NATS_INBOX_PREFIX);
//   - .env.example: the secrets compose reads (never written into compose.yaml).
//   - grafana/bevygap.json: a Grafana dashboard of the services' metrics;
//   - prometheus/alerts.yml and prometheus/alerts_test.yml: Prometheus alert rules and their
//     unit tests, in promtool's formats.
//
// The package has no Go API. Its test starts an embedded NATS server with exactly the users
// and permissions of nats/auth.conf, runs the real services against it, each with its own
// role, and checks both the full session flow and what each role must not be able to do.
// See docs/deploy.md.
//
// Its other tests do what `promtool check rules` and `promtool test rules` do, with the
// Prometheus library packages, and check that every dashboard and alert query parses and selects
// only series the services export. See docs/metrics.md.
//
// TestClusterEndToEnd runs compose.yaml's topology as separate processes on loopback (three
// nats-server nodes with nats/nats.conf, two matchmakers, two httpd, the webhook sink, the
// simulator running the dotroom game server) and plays sessions end to end. See docs/cluster.md.
package deploy
