package distribute

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// Verdict is the outcome of one preflight check on one node.
type Verdict string

// The verdicts, from best to worst.
const (
	Pass Verdict = "pass"
	Warn Verdict = "warn"
	Fail Verdict = "fail"
)

func (v Verdict) rank() int {
	switch v {
	case Fail:
		return 2
	case Warn:
		return 1
	}
	return 0
}

// worse returns the worse of two verdicts.
func worse(a, b Verdict) Verdict {
	if b.rank() > a.rank() {
		return b
	}
	return a
}

// The preflight checks, in the order they are shown.
const (
	CheckOS        = "os"
	CheckPackages  = "packages"
	CheckConsul    = "consul"
	CheckFirewalld = "firewalld"
	CheckPorts     = "ports"
	CheckClock     = "clock"
	CheckReach     = "reach"
	CheckDisk      = "disk"
)

// PreflightChecks lists every check of a full preflight, in order.
var PreflightChecks = []string{CheckOS, CheckPackages, CheckConsul, CheckFirewalld, CheckPorts, CheckClock, CheckReach, CheckDisk}

// CheapChecks are the checks apply runs before it starts.
var CheapChecks = []string{CheckPorts, CheckClock}

// Check is one preflight check's result on one node.
type Check struct {
	Node    string  `json:"node"`
	Check   string  `json:"check"`
	Verdict Verdict `json:"verdict"`
	// Reason says what was found; Fix what to do about a warn or fail.
	Reason string `json:"reason"`
	Fix    string `json:"fix,omitempty"`
	// Unreachable: the node could not be reached, so nothing was checked.
	Unreachable bool `json:"unreachable,omitempty"`
}

// PreflightResult is every check of every node, in node then check order.
type PreflightResult struct {
	ApigeeVersion string  `json:"apigee_version,omitempty"`
	Checks        []Check `json:"checks"`
}

// Failed reports whether any check failed.
func (r *PreflightResult) Failed() bool {
	for _, c := range r.Checks {
		if c.Verdict == Fail {
			return true
		}
	}
	return false
}

// PreflightOptions say what a preflight checks.
type PreflightOptions struct {
	// Cheap runs only CheapChecks (free ports, clock skew): one short step
	// per node.
	Cheap bool
	// ApigeeVersion picks the OS support table (DefaultApigeeVersion when
	// empty).
	ApigeeVersion string
	// Ports is the proxy-port assignment the nodes will listen on.
	Ports *inventory.Assignment
	// ReachTimeout bounds each TCP probe between nodes (default 3 s).
	ReachTimeout time.Duration
	// Now is the admin clock (nil = time.Now).
	Now func() time.Time
}

// DefaultApigeeVersion is the Apigee release whose OS table preflight uses
// when none is given: the newest mtlsctl knows.
const DefaultApigeeVersion = "4.51.00"

// supportedOS is Apigee's OS support table for Edge with mTLS: the releases
// of RHEL and Oracle Linux (os-release IDs rhel and ol) each version runs on.
var supportedOS = map[string][]string{
	"4.19.06": {"7.5", "7.6", "7.7"},
	"4.50.00": {"7.5", "7.6", "7.7", "7.8", "7.9"},
	"4.51.00": {"7.5", "7.6", "7.7", "7.8", "7.9", "8.0"},
}

// ApigeeVersions lists the Apigee versions preflight knows, sorted.
func ApigeeVersions() []string {
	var out []string
	for v := range supportedOS {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// requiredCommands are the commands of the packages Apigee's mTLS needs on
// every node (iptables-services is checked apart: it has no command).
var requiredCommands = []string{"base64", "iptables", "lsof", "nc", "openssl"}

// clientConsulPorts are the ports a Consul client agent listens on (no
// server RPC, no WAN gossip).
var clientConsulPorts = []int{8301, 8500, 8502, 8503, 8600}

// serverProbePorts are the server ports every node must reach.
var serverProbePorts = []int{8300, 8301, 8302}

// minFreeKiB is the least free space preflight accepts where mtlsctl
// writes: configs, certificates, units and backups take well under 1 MiB,
// and the agent's data dir starts small.
const minFreeKiB = 8 << 10

// Preflight runs the checks on the given nodes (nil: every node) in
// parallel, one connection each, and returns every verdict. A node that
// cannot be reached gets a fail on every check.
func (s *Session) Preflight(ctx context.Context, nodes []*inventory.Node, o PreflightOptions) (*PreflightResult, error) {
	if o.ApigeeVersion == "" {
		o.ApigeeVersion = DefaultApigeeVersion
	}
	if _, ok := supportedOS[o.ApigeeVersion]; !ok {
		return nil, fmt.Errorf("apigee version %q: preflight knows %s", o.ApigeeVersion, strings.Join(ApigeeVersions(), ", "))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ReachTimeout <= 0 {
		o.ReachTimeout = 3 * time.Second
	}
	if nodes == nil {
		nodes = s.topo.Nodes
	}
	checks := PreflightChecks
	if o.Cheap {
		checks = CheapChecks
	}
	byNode := make(map[string][]Check, len(nodes))
	results := make(map[string]*[]Check, len(nodes))
	for _, n := range nodes {
		results[n.Name] = new([]Check)
	}
	errs := s.forEach(ctx, nodes, 0, func(ctx context.Context, n *inventory.Node) error {
		c, err := s.conn(ctx, n)
		if err != nil {
			return err
		}
		*results[n.Name], err = s.preflightNode(ctx, c, n, o)
		return err
	})
	for _, n := range nodes {
		if err := errs[n.Name]; err != nil {
			for _, ch := range checks {
				byNode[n.Name] = append(byNode[n.Name], Check{Node: n.Name, Check: ch, Verdict: Fail, Unreachable: true,
					Reason: "cannot check the node: " + err.Error(), Fix: "make the node reachable over SSH (see `mtlsctl status`)"})
			}
			continue
		}
		byNode[n.Name] = *results[n.Name]
	}
	res := &PreflightResult{ApigeeVersion: o.ApigeeVersion}
	for _, n := range nodes {
		res.Checks = append(res.Checks, byNode[n.Name]...)
	}
	return res, nil
}

// preflightNode runs the cheap step and, for a full preflight, the full
// step on one node, and judges what they print.
func (s *Session) preflightNode(ctx context.Context, c *transport.Conn, n *inventory.Node, o PreflightOptions) ([]Check, error) {
	before := o.Now()
	out, err := c.Run(ctx, "preflight", preflightScript(preflightVars{mode: "cheap"}))
	after := o.Now()
	if err != nil {
		return nil, err
	}
	f := parsePreflight(out)
	ports := s.listenPorts(n, o.Ports)
	checks := []Check{
		judgePorts(n.Name, ports, f),
		judgeClock(n.Name, f.date, before, after),
	}
	if !o.Cheap {
		cl := s.topo.Cluster
		v := preflightVars{mode: "full", cmds: requiredCommands, unitDir: cl.Mesh.UnitDir,
			consul: cl.Mesh.ConsulBinary, dirs: s.writeDirs(), reach: s.reachTargets(n, o.Ports),
			timeout: o.ReachTimeout}
		out, err := c.Run(ctx, "preflight", preflightScript(v))
		if err != nil {
			return nil, err
		}
		full := parsePreflight(out)
		full.rooted = f.rooted
		checks = append(checks,
			judgeOS(n.Name, full.os, o.ApigeeVersion),
			judgePackages(n.Name, full),
			judgeConsul(n.Name, cl.Mesh.ConsulBinary, cl.Consul.Version, full),
			judgeFirewalld(n.Name, full),
			judgeReach(n.Name, v.reach, full.reach),
			judgeDisk(n.Name, full.dirs),
		)
		slices.SortStableFunc(checks, func(a, b Check) int {
			return slices.Index(PreflightChecks, a.Check) - slices.Index(PreflightChecks, b.Check)
		})
	}
	return checks, nil
}

// listenPort is one port a node will listen on and what for.
type listenPort struct {
	port int
	what string
}

// listenPorts are the ports n will listen on: Consul's (all of them on a
// server, the client agent's otherwise), its proxy ports and its egress
// port.
func (s *Session) listenPorts(n *inventory.Node, a *inventory.Assignment) []listenPort {
	var out []listenPort
	consul := clientConsulPorts
	if n.IsServer() {
		consul = inventory.ConsulPorts
	}
	for _, p := range consul {
		out = append(out, listenPort{p, "Consul"})
	}
	if s.topo.Cluster.Mesh.Enabled && a != nil {
		for _, key := range inventory.PortKeys() {
			for _, p := range a.Ports(n.Name, key) {
				out = append(out, listenPort{p, key + " proxy"})
			}
		}
	}
	return out
}

// reachTarget is one address and port a node must reach.
type reachTarget struct {
	addr string
	port int
	what string
}

// reachTargets are what n must reach: every other server's 8300-8302 (the
// servers of every datacenter: WAN gossip and RPC cross them) and, with
// the mesh on, the ingress proxy ports of every other node. Nodes whose
// address is a template are left out (resolved only on the node).
func (s *Session) reachTargets(n *inventory.Node, a *inventory.Assignment) []reachTarget {
	var out []reachTarget
	for _, m := range s.topo.Nodes {
		if m.Name == n.Name || m.IsTemplate() {
			continue
		}
		if m.IsServer() {
			for _, p := range serverProbePorts {
				out = append(out, reachTarget{m.Address, p, "Consul server " + m.Name})
			}
		}
		if !s.topo.Cluster.Mesh.Enabled || a == nil {
			continue
		}
		for _, key := range inventory.PortKeys() {
			if key == inventory.Egress {
				continue
			}
			for _, p := range a.Ports(m.Name, key) {
				out = append(out, reachTarget{m.Address, p, key + " proxy on " + m.Name})
			}
		}
	}
	return out
}

// writeDirs are the directories mtlsctl writes on a node.
func (s *Session) writeDirs() []string {
	cl := s.topo.Cluster
	dirs := []string{cl.Consul.ConfigDir, cl.Consul.TLSDir, cl.Consul.DataDir, cl.NodeStateDir}
	if cl.Mesh.Enabled {
		dirs = append(dirs, cl.Mesh.UnitDir)
	}
	if cl.ACL.Enabled {
		dirs = append(dirs, cl.ACL.TokenDir)
	}
	var out []string
	for _, d := range dirs {
		if d != "" && !slices.Contains(out, path.Clean(d)) {
			out = append(out, path.Clean(d))
		}
	}
	return out
}

// preflightVars are the inputs of the preflight step.
type preflightVars struct {
	mode    string // cheap or full
	cmds    []string
	unitDir string
	consul  string
	dirs    []string
	reach   []reachTarget
	timeout time.Duration
}

// preflightScript is the preflight step (scripts/preflight.sh).
func preflightScript(p preflightVars) string {
	var reach []string
	for _, t := range p.reach {
		reach = append(reach, row(t.addr, strconv.Itoa(t.port)))
	}
	secs := int(p.timeout.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	var v vars
	v.set("S", "/")
	v.set("RUN", "")
	v.set("MODE", p.mode)
	v.set("CMDS", lines(p.cmds))
	v.set("UNITDIR", p.unitDir)
	v.set("CONSUL", p.consul)
	v.set("DIRS", lines(p.dirs))
	v.set("REACH", lines(reach))
	v.set("TMO", strconv.Itoa(secs))
	return stepScript("preflight", v)
}
