// Live-cluster tests: mtlsctl's real pipeline (generate, apply, verify,
// rolling restarts) against real Consul agents on real OpenSSH hosts. Each
// node is a network namespace built by internal/testinfra/testnet, with its own
// /etc/consul.d, data dir, node state dir and root home, and a systemctl
// stand-in that manages the agent. The tests skip unless they run as root
// with sshd and the Consul binaries (scripts/build-consul.sh) available.
// Helpers here are prefixed lc so they do not collide with other files.

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/distribute/consulapi"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtlsctl/mtlsctl/internal/app"
	"github.com/mtlsctl/mtlsctl/internal/testinfra/consultest"
	"github.com/mtlsctl/mtlsctl/internal/testinfra/testnet"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// lcConsulBinary returns a path to the Consul binary of version that nodes can
// run. The build cache lives under the real /root, which is private inside
// every node, so the binary is hard-linked (or copied) into a temp dir.
func lcConsulBinary(t *testing.T, version string) string {
	t.Helper()
	src := consultest.Binary(t, version)
	dir := t.TempDir()
	// The proxies run as nobody: it must reach the binary.
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dst := filepath.Join(dir, "consul")
	if err := os.Link(src, dst); err != nil {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// lcNode is one node of a test cluster.
type lcNode struct {
	name       string
	dc         string
	components []string
}

// lcSpec is a test cluster: its nodes, Consul version and testnet.
type lcSpec struct {
	consul  string // set by lcStart: the binary nodes run
	version string
	subnet  string
	prefix  string
	nodes   []lcNode
	// extra is appended to the cluster file (top-level keys).
	extra string
}

// lcCluster is a test cluster after generate and apply.
type lcCluster struct {
	t      *testing.T
	net    *testnet.Net
	topo   *inventory.Topology
	common app.Common
	dist   app.DistOptions
	out    *lcBuffer
	consul string // the Consul binary nodes run
	// Applied is how long generate + apply + verify took.
	Applied time.Duration
	// Health is VerifyCluster's report after the first apply.
	Health *consulapi.Health
}

// lcBuffer is a bytes.Buffer safe for the progress reporter's goroutines.
type lcBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lcBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lcBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lcStart builds the nodes, writes the cluster file and runs the real
// pipeline: app.Generate, app.Apply --yes (the first apply starts every
// agent), app.VerifyCluster.
func lcStart(t *testing.T, spec lcSpec) *lcCluster {
	t.Helper()
	bin := lcConsulBinary(t, spec.version)
	spec.consul = bin
	var names []string
	for _, n := range spec.nodes {
		names = append(names, n.name)
	}
	nt := testnet.New(t, testnet.Options{
		Names:  names,
		Subnet: spec.subnet,
		Prefix: spec.prefix,
		Services: map[string]testnet.ServiceDef{
			"consul": {Command: []string{bin, "agent", "-config-dir=/etc/consul.d"}, StopTimeout: 10 * time.Second},
		},
	})
	t.Setenv("HOME", nt.Home())
	t.Setenv("SSH_AUTH_SOCK", "")

	dir := t.TempDir()
	inv := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(inv, lcClusterYAML(nt, spec), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &lcBuffer{}
	lc := &lcCluster{t: t, net: nt, out: out, consul: bin,
		common: app.Common{Inventory: inv, State: filepath.Join(dir, "state"), Stdout: out, Stderr: out},
		dist:   app.DistOptions{HomeDir: nt.Home(), Timeout: 30 * time.Second},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("mtlsctl output:\n%s", out.String())
			for _, nd := range nt.Nodes() {
				if b, err := os.ReadFile(nd.ServiceLogFile("consul")); err == nil {
					t.Logf("%s consul log (tail):\n%s", nd.Name, lcTail(string(b), 25))
				}
				logs, _ := filepath.Glob(filepath.Join(filepath.Dir(filepath.Dir(nd.ServiceLogFile("consul"))), "mtlsctl-proxy-*", "log"))
				for _, l := range logs {
					if b, err := os.ReadFile(l); err == nil {
						t.Logf("%s %s log (tail):\n%s", nd.Name, filepath.Base(filepath.Dir(l)), lcTail(string(b), 12))
					}
				}
			}
		}
	})
	topo, err := inventory.Load(inv)
	if err != nil {
		t.Fatal(err)
	}
	lc.topo = topo

	start := time.Now()
	if err := app.Generate(lc.common, app.GenerateOptions{}); err != nil {
		t.Fatalf("generate: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := app.Apply(ctx, lc.common, lc.dist, app.ApplyOptions{Yes: true}); err != nil {
		t.Fatalf("apply: %v", err)
	}
	lc.Health, err = app.VerifyCluster(ctx, lc.common, lc.dist)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	lc.Applied = time.Since(start)
	t.Logf("%d-node Consul %s cluster: generate + apply + healthy in %s", len(spec.nodes), spec.version, lc.Applied.Round(100*time.Millisecond))
	return lc
}

func lcClusterYAML(nt *testnet.Net, spec lcSpec) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: %s\nconsul:\n  version: %q\n", spec.prefix, spec.version)
	b.WriteString("  reload_command: systemctl reload consul\n  restart_command: systemctl restart consul\n")
	// The mesh is on (the default): the proxies run the same binary.
	fmt.Fprintf(&b, "mesh:\n  consul_binary: %s\n", spec.consul)
	fmt.Fprintf(&b, "ssh:\n  user: root\n  identity_file: %s\n  known_hosts: %s\n", nt.ClientKeyFile(), nt.KnownHostsFile())
	b.WriteString(spec.extra)
	b.WriteString("datacenters:\n")
	dc := ""
	for _, n := range spec.nodes {
		if n.dc != dc {
			dc = n.dc
			fmt.Fprintf(&b, "  - name: %s\n    nodes:\n", dc)
		}
		fmt.Fprintf(&b, "      - name: %s\n        address: %s\n        components: [%s]\n", n.name, nt.Node(n.name).Addr, strings.Join(n.components, ", "))
	}
	return []byte(b.String())
}

// dialToken is a live handle on the cluster (no bundles: certificates are
// checked through app.VerifyCluster / app.LiveStatus) whose calls carry
// tok ("": none).
func (lc *lcCluster) dialToken(o transport.Options, tok string) *consulapi.Cluster {
	lc.t.Helper()
	o.HomeDir = lc.net.Home()
	c, err := consulapi.Dial(context.Background(), lc.topo, o)
	if err != nil {
		lc.t.Fatal(err)
	}
	lc.t.Cleanup(func() { c.Close() })
	if tok != "" {
		c.SetACL(consulapi.ACLConfig{Enabled: true, Cluster: lc.topo.Cluster.Name, Token: tok, ReadOnly: true})
	}
	return c
}

// dial is dialToken with the management token apply kept, when there is
// one (read only: the test never bootstraps or makes tokens itself).
func (lc *lcCluster) dial(o transport.Options) *consulapi.Cluster {
	lc.t.Helper()
	tok := ""
	if st, err := ca.Open(lc.common.State, ca.OpenOptions{}); err == nil {
		tok, _ = st.ManagementToken()
	}
	return lc.dialToken(o, tok)
}

// servicePID is the PID of node's agent (0 when it is not running).
func (lc *lcCluster) servicePID(node string) int {
	pid, err := lc.net.Node(node).ServicePID("consul")
	if err != nil {
		return 0
	}
	return pid
}

func lcTail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lcFiveNodes is the Apigee 5-node layout: ZooKeeper (Consul servers) and
// Cassandra on n1-n3, the other components on two clients.
func lcFiveNodes() []lcNode {
	return []lcNode{
		{"n1", "dc-1", []string{"zookeeper", "cassandra", "management-server", "openldap", "ui"}},
		{"n2", "dc-1", []string{"zookeeper", "cassandra", "router", "message-processor"}},
		{"n3", "dc-1", []string{"zookeeper", "cassandra", "router", "message-processor"}},
		{"n4", "dc-1", []string{"postgres", "qpid"}},
		{"n5", "dc-1", []string{"postgres", "qpid"}},
	}
}
