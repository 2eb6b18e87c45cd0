package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/internal/testinfra/testnet"
)

// The preflight test runs on its own subnet and prefix, so that it can run
// while other e2e tests use theirs.
const (
	pfSubnet = "198.18.150.0/24"
	pfPrefix = "pf"
)

// pfCheck is one row of `mtlsctl -o json preflight`.
type pfCheck struct {
	Node, Check, Verdict, Reason, Fix string
}

func (e *dsEnv) preflight(code int) map[string]pfCheck {
	e.t.Helper()
	r := e.mustRun(code, "-o", "json", "preflight")
	var res struct{ Checks []pfCheck }
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		e.t.Fatalf("preflight JSON: %v\n%s", err, r)
	}
	out := map[string]pfCheck{}
	for _, c := range res.Checks {
		out[c.Node+"/"+c.Check] = c
	}
	if len(out) != 3*8 {
		e.t.Fatalf("%d checks, want 3 nodes x 8:\n%s", len(out), r)
	}
	return out
}

// Issue 9, item 4: preflight against real OpenSSH hosts. A clean cluster
// passes every check (the OS check warns: this is not RHEL); then the test
// takes a port on pf1, hides lsof from pf2's PATH, skews pf3's clock with a
// stand-in date and drops pf3's packets to pf1's port 8302 inside pf1's
// namespace, and each gets its verdict. apply refuses on the port and
// clock fails before it changes anything.
func TestPreflight(t *testing.T) {
	n := testnet.New(t, testnet.Options{Names: []string{"pf1", "pf2", "pf3"}, Subnet: pfSubnet, Prefix: pfPrefix,
		Services: map[string]testnet.ServiceDef{"consul": consulService}})
	e := &dsEnv{t: t, net: n, bin: mtlsctlBinary(t), dir: t.TempDir(), home: n.Home()}
	e.inv = filepath.Join(e.dir, "cluster.yaml")
	e.state = filepath.Join(e.dir, "state")
	var b strings.Builder
	fmt.Fprintf(&b, "cluster: pf\nconsul:\n  version: \"1.6.2\"\nmesh:\n  consul_binary: %s/consul\n", testnet.BinDir)
	fmt.Fprintf(&b, "ssh:\n  user: root\n  identity_file: %s\n  known_hosts: %s\n", n.ClientKeyFile(), n.KnownHostsFile())
	b.WriteString("datacenters:\n  - name: dc-1\n    nodes:\n")
	for _, nd := range n.Nodes() {
		fmt.Fprintf(&b, "      - name: %s\n        address: %s\n        components: [zookeeper, cassandra]\n", nd.Name, nd.Addr)
	}
	if err := os.WriteFile(e.inv, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	e.mustRun(0, "generate")

	// What a prepared node has: nc (not on this machine), consul 1.6.2
	// and the iptables-services unit.
	write := func(nd *testnet.Node, p, body string, mode os.FileMode) {
		t.Helper()
		os.MkdirAll(filepath.Dir(nd.Path(p)), 0o755)
		if err := os.WriteFile(nd.Path(p), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, nd := range n.Nodes() {
		write(nd, testnet.BinDir+"/nc", "#!/bin/sh\nexit 0\n", 0o755)
		write(nd, testnet.BinDir+"/consul", "#!/bin/sh\necho 'Consul v1.6.2'\necho 'Protocol 2 spoken by default'\n", 0o755)
		write(nd, "/etc/systemd/system/iptables.service", "[Service]\nType=oneshot\nExecStart=/bin/true\n", 0o644)
	}

	got := e.preflight(0)
	for key, c := range got {
		want := "pass"
		if strings.HasSuffix(key, "/os") {
			want = "warn"
		}
		if c.Verdict != want {
			t.Errorf("clean cluster: %s = %s (%s), want %s", key, c.Verdict, c.Reason, want)
		}
	}

	pf1, pf2, pf3 := n.Node("pf1"), n.Node("pf2"), n.Node("pf3")
	// pf1: a process that is not consul holds Consul's HTTP port.
	ln, err := pf1.Listen("tcp", pf1.Addr+":8500")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// pf2: lsof is not on PATH. bash, root's login shell, reads ~/.bashrc
	// (private to the node) for every ssh command, so PATH becomes the
	// stand-in dir and a dir of links to every command but lsof.
	links := pf2.Path("/root/pfbin")
	if err := os.MkdirAll(links, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		ents, _ := os.ReadDir(dir)
		for _, ent := range ents {
			if ent.Name() != "lsof" {
				os.Symlink(filepath.Join(dir, ent.Name()), filepath.Join(links, ent.Name())) // first one wins
			}
		}
	}
	write(pf2, "/root/.bashrc", "PATH="+testnet.BinDir+":/root/pfbin\nexport PATH\n", 0o644)
	// pf3: a clock 5 minutes ahead.
	write(pf3, testnet.BinDir+"/date", "#!/bin/sh\nset -- $(/bin/date +%s.%N)\necho $(( ${1%.*} + 300 )).${1#*.}\n", 0o755)
	// pf1 drops pf3's packets to 8302: pf3's probe times out.
	if out, err := pf1.Exec(t.Context(), "iptables", "-A", "INPUT", "-p", "tcp", "-s", pf3.Addr, "--dport", "8302", "-j", "DROP"); err != nil {
		t.Skipf("iptables in the node: %v %s", err, out)
	}

	got = e.preflight(1)
	for _, tc := range []struct {
		key, verdict, reason, fix string
	}{
		{"pf1/ports", "fail", "8500 (Consul) is held by", "stop what holds the port"},
		{"pf2/packages", "fail", "not on the node's PATH: lsof", "install"},
		{"pf3/clock", "fail", "ahead of the admin machine", "synchronise the clock"},
		{"pf3/reach", "fail", pf1.Addr + ":8302 (Consul server pf1): timed out", "port(s) 8302"},
		{"pf1/reach", "pass", "", ""},
		{"pf2/reach", "pass", "", ""},
		{"pf2/ports", "pass", "", ""},
		{"pf3/ports", "pass", "", ""},
		{"pf1/clock", "pass", "", ""},
		{"pf1/packages", "pass", "", ""},
		{"pf3/os", "warn", "", ""},
	} {
		c := got[tc.key]
		if c.Verdict != tc.verdict || !strings.Contains(c.Reason, tc.reason) || !strings.Contains(c.Fix, tc.fix) {
			t.Errorf("%s = %s %q (fix %q), want %s with %q (fix %q)", tc.key, c.Verdict, c.Reason, c.Fix, tc.verdict, tc.reason, tc.fix)
		}
	}

	// The table, and apply's own cheap checks.
	r := e.mustRun(1, "preflight")
	if !strings.Contains(r.stdout, "NODE") || !strings.Contains(r.stdout, "FAIL") {
		t.Errorf("preflight table:\n%s", r)
	}
	r = e.mustRun(1, "apply", "--yes")
	for _, want := range []string{"pf1", "8500", "pf3", "clock", "--skip-preflight"} {
		if !strings.Contains(r.out(), want) {
			t.Errorf("apply's refusal does not say %q:\n%s", want, r)
		}
	}
	if strings.Contains(r.out(), "pf3  reach") {
		t.Errorf("apply ran more than the cheap checks:\n%s", r)
	}
	e.assertNoGeneration()
}
