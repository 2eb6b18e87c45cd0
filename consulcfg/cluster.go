package consulcfg

import (
	"errors"
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// cluster is what every node's rendering shares, computed once per Render.
type cluster struct {
	top     *inventory.Topology
	consul  inventory.Consul // with defaults filled in
	paths   nodePaths
	tlsBlk  bool                // Consul >= 1.12: the tls {} stanza
	primary string              // primary_datacenter, multi-DC only
	joinLAN map[string][]string // dc -> literal server addresses, topology order
	joinWAN []string            // every DC's literal server addresses
	servers map[string]int      // dc -> number of servers
	fw      firewallShared

	// The mesh, when on (Cluster.Mesh.Enabled).
	meshOn bool
	mesh   meshSettings
	mt     *meshTopology
	script File // firewall.sh, the same on every node
	fwUnit File // FirewallUnit

	// ACLs, when on (Cluster.ACL.Enabled).
	aclOn    bool
	tokenDir string
}

func newCluster(in Input) (*cluster, error) {
	t := in.Topology
	if t == nil || t.Cluster == nil {
		return nil, fmt.Errorf("%w: no topology (build it with inventory.Load)", ErrBadTopology)
	}
	if err := checkCABundle(in.CABundle); err != nil {
		return nil, err
	}
	if err := checkGossipKey(in.GossipKey); err != nil {
		return nil, err
	}
	paths, consul, err := newPaths(t.Cluster)
	if err != nil {
		return nil, err
	}
	v, err := parseVersion(consul.Version)
	if err != nil {
		return nil, err
	}
	c := &cluster{
		top:     t,
		consul:  consul,
		paths:   paths,
		tlsBlk:  !v.less(version{1, 12, 0}),
		joinLAN: map[string][]string{},
		servers: map[string]int{},
	}
	if t.MultiDC() {
		c.primary = t.Cluster.Datacenters[0].Name
	}
	for _, n := range t.Nodes {
		if !n.IsServer() {
			continue
		}
		c.servers[n.Datacenter]++
		// A template resolves on the node that reads it, so it cannot name
		// another node: only literal addresses can be joined.
		if n.IsTemplate() {
			continue
		}
		c.joinLAN[n.Datacenter] = append(c.joinLAN[n.Datacenter], n.Address)
		c.joinWAN = append(c.joinWAN, n.Address)
	}
	for _, dc := range t.Cluster.Datacenters {
		if len(c.joinLAN[dc.Name]) == 0 {
			return nil, fmt.Errorf("datacenter %s: %w: give at least one of its zookeeper nodes an IP address (a go-sockaddr template resolves only on its own node)", dc.Name, ErrNoJoinAddress)
		}
	}
	if t.Cluster.Mesh.Enabled {
		if err := c.initMesh(); err != nil {
			return nil, err
		}
	}
	c.fw = newFirewallShared(t, c.meshOn)
	if t.Cluster.ACL.Enabled {
		c.aclOn, c.tokenDir = true, t.Cluster.ACL.TokenDir
		if c.tokenDir == "" {
			c.tokenDir = DefaultTokenDir
		}
		if !path.IsAbs(c.tokenDir) {
			return nil, fmt.Errorf("%w: acl.token_dir %q is not absolute", ErrBadTopology, c.tokenDir)
		}
	}
	return c, nil
}

// initMesh checks what the mesh needs of the whole cluster and renders the
// files every node shares.
func (c *cluster) initMesh() error {
	t := c.top
	var errs []error
	for _, n := range t.Nodes {
		if _, err := meshAddress(n); err != nil {
			errs = append(errs, &NodeError{Node: n.Name, Err: err})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m, err := newMeshSettings(t.Cluster, c.consul.User, path.Dir(c.paths.script))
	if err != nil {
		return err
	}
	c.meshOn, c.mesh, c.mt = true, m, newMeshTopology(t)
	c.script = NewFile(c.paths.script, firewallScript(t.Cluster.Name, c.paths.firewall), 0o644, KindOther)
	c.fwUnit = NewFile(c.unitPath(FirewallUnit), c.firewallUnit(), 0o644, KindUnit)
	return nil
}

// version is a Consul version, enough of it to pick the config schema.
type version struct{ major, minor, patch int }

func (v version) less(o version) bool {
	if v.major != o.major {
		return v.major < o.major
	}
	if v.minor != o.minor {
		return v.minor < o.minor
	}
	return v.patch < o.patch
}

// parseVersion accepts "1.6.2", "v1.13.9", "1.13" and suffixes such as
// "1.13.9+ent" or "1.6.2-beta1" (which compare as their release).
func parseVersion(s string) (version, error) {
	bad := func() (version, error) {
		return version{}, fmt.Errorf("%w: consul.version %q: want a Consul version such as 1.6.2", ErrBadTopology, s)
	}
	core := strings.TrimPrefix(strings.TrimSpace(s), "v")
	if i := strings.IndexAny(core, "-+ "); i >= 0 {
		core = core[:i]
	}
	parts := strings.Split(core, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return bad()
	}
	var nums [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return bad()
		}
		nums[i] = n
	}
	return version{nums[0], nums[1], nums[2]}, nil
}

// ipv4 returns the address as an IPv4 literal, if it is one.
func ipv4(addr string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return netip.Addr{}, false
	}
	return a, true
}
