package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// natsNode is the loopback placement of one node of the NATS cluster.
type natsNode struct {
	client, monitor, route int    // loopback ports of 4222, 8222 and 6222
	storeDir               string // JetStream store
}

// natsConfig returns deploy/nats/nats.conf for one node on loopback: the file as shipped with
// only its addresses, its store directory and its include path changed. Every line it changes
// must be found exactly as expected, so that a change of nats.conf that the harness does not
// know fails loudly instead of running a cluster that differs from the deployment.
// confDir is the directory the returned config will be written to (the include of auth.conf
// is relative to it); nodes are all the cluster's nodes, self is this node's index.
func natsConfig(deployDir, confDir string, nodes []natsNode, self int) (string, error) {
	path := filepath.Join(deployDir, "nats", "nats.conf")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	auth, err := filepath.Abs(filepath.Join(deployDir, "nats", "auth.conf"))
	if err != nil {
		return "", err
	}
	absConf, err := filepath.Abs(confDir)
	if err != nil {
		return "", err
	}
	relAuth, err := filepath.Rel(absConf, auth)
	if err != nil {
		return "", err
	}
	n := nodes[self]
	repl := []struct{ old, new string }{
		{"listen: 0.0.0.0:4222\n", "listen: 127.0.0.1:" + strconv.Itoa(n.client) + "\n"},
		{"http: 0.0.0.0:8222\n", "http: 127.0.0.1:" + strconv.Itoa(n.monitor) + "\n"},
		{"store_dir: /data/jetstream\n", "store_dir: " + strconv.Quote(n.storeDir) + "\n"},
		{"listen: 0.0.0.0:6222\n", "listen: 127.0.0.1:" + strconv.Itoa(n.route) + "\n"},
		{"include ./auth.conf\n", "include " + strconv.Quote(filepath.ToSlash(relAuth)) + "\n"},
	}
	for i := range nodes {
		repl = append(repl, struct{ old, new string }{
			fmt.Sprintf("nats-route://nats-%d:6222\n", i+1),
			fmt.Sprintf("nats-route://127.0.0.1:%d\n", nodes[i].route),
		})
	}
	conf := string(b)
	for _, r := range repl {
		if c := strings.Count(conf, r.old); c != 1 {
			return "", fmt.Errorf("%s: found %q %d times, want once (update internal/cluster for the new config)", path, strings.TrimSpace(r.old), c)
		}
		conf = strings.Replace(conf, r.old, r.new, 1)
	}
	return conf, nil
}
