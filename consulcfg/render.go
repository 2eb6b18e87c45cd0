package consulcfg

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// Sentinel errors; Render and RenderNode wrap them in a *NodeError (or, for
// cluster-wide problems, with the offending field) so callers can use
// errors.Is.
var (
	ErrNoLeaf        = errors.New("no leaf certificate")
	ErrNoPorts       = errors.New("no proxy ports assigned")
	ErrUnknownNode   = errors.New("node not in the topology")
	ErrBadCABundle   = errors.New("bad CA bundle")
	ErrBadLeaf       = errors.New("bad leaf certificate or key")
	ErrBadGossipKey  = errors.New("bad gossip key")
	ErrBadTopology   = errors.New("bad topology")
	ErrNoJoinAddress = errors.New("no Consul server with an IP address to join")
)

// NodeError is the program's one per-node error type (inventory.NodeError).
type NodeError = inventory.NodeError

// Leaf is one node's certificate and private key, PEM encoded.
type Leaf struct {
	CertPEM []byte
	KeyPEM  []byte
}

// Input is everything the renderers need. It holds secrets (keys, the gossip
// key): never log it.
type Input struct {
	Topology *inventory.Topology
	Ports    *inventory.Assignment
	// CABundle holds one or more CA certificates (PEM). During a CA rollover
	// it holds the old and the new CA. It must never hold a private key.
	CABundle []byte
	// Leaves maps a node name to its certificate and key.
	Leaves map[string]Leaf
	// GossipKey is the base64 gossip encryption key (16, 24 or 32 bytes).
	GossipKey string
	// GossipTransition renders encrypt_verify_incoming/outgoing as false: the
	// first phase of turning gossip encryption on in a running cluster.
	GossipTransition bool
	// Tokens maps a node name to its ACL tokens; needed when the cluster
	// has ACLs on (Cluster.ACL.Enabled).
	Tokens map[string]NodeTokens
}

// File names inside Consul.TLSDir, Consul.ConfigDir and Cluster.NodeStateDir
// (FirewallScriptName, in mesh.go, sits beside FirewallName).
const (
	CAFileName      = "ca.pem"
	CertFileName    = "agent.pem"
	KeyFileName     = "agent-key.pem"
	AgentConfigName = "mtlsctl-agent.json"
	ServicesName    = "mtlsctl-services.json"
	FirewallName    = "firewall.rules"
	PortsFileName   = "ports.json"
)

// DefaultNodeState is mtlsctl's state directory on a node when the cluster
// file names none.
const DefaultNodeState = "/var/lib/mtlsctl"

// Render renders one bundle per node, in topology order. Every node's
// problems are reported, joined, each as a *NodeError. Nodes render in
// parallel (each is independent and rendering is pure), so a 1,000-node
// cluster takes a fraction of a second.
func Render(in Input) ([]Bundle, error) {
	c, err := newCluster(in)
	if err != nil {
		return nil, err
	}
	nodes := in.Topology.Nodes
	out := make([]Bundle, len(nodes))
	errs := make([]error, len(nodes))
	workers := min(runtime.GOMAXPROCS(0), 1+len(nodes)/32)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(nodes); i += workers {
				out[i], errs[i] = c.renderNode(in, nodes[i])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// RenderNode renders the bundle of one node.
func RenderNode(in Input, node string) (Bundle, error) {
	c, err := newCluster(in)
	if err != nil {
		return Bundle{}, err
	}
	n := in.Topology.Node(node)
	if n == nil {
		return Bundle{}, &NodeError{Node: node, Err: ErrUnknownNode}
	}
	return c.renderNode(in, n)
}

func (c *cluster) renderNode(in Input, n *inventory.Node) (Bundle, error) {
	nodeErr := func(err error) error { return &NodeError{Node: n.Name, Err: err} }
	leaf, ok := in.Leaves[n.Name]
	if !ok || len(leaf.CertPEM) == 0 || len(leaf.KeyPEM) == 0 {
		return Bundle{}, nodeErr(fmt.Errorf("%w: run `mtlsctl generate` to issue it", ErrNoLeaf))
	}
	if err := checkLeaf(leaf); err != nil {
		return Bundle{}, nodeErr(err)
	}
	lis, err := nodeListeners(c.top.Cluster, n, in.Ports, c.meshOn)
	if err != nil {
		return Bundle{}, nodeErr(err)
	}
	var ups []upstream
	if c.meshOn {
		if ups, err = c.mt.upstreams(n); err != nil {
			return Bundle{}, nodeErr(err)
		}
	}
	var tokens NodeTokens
	if c.aclOn {
		if tokens, err = nodeTokens(in, n, lis); err != nil {
			return Bundle{}, nodeErr(err)
		}
	}
	agent, err := c.agentConfig(in, n, tokens)
	if err != nil {
		return Bundle{}, nodeErr(err)
	}
	var services []byte
	var regs [][]byte // with the mesh on: each listener's registration, for its proxy's digest
	if c.meshOn {
		services, regs, err = meshServicesConfig(n, lis, ups, tokens.Services)
	} else {
		services, err = servicesConfig(n, lis, tokens.Services)
	}
	if err != nil {
		return Bundle{}, nodeErr(err)
	}
	ports, err := marshalJSON(nodeReport(n, lis, ups))
	if err != nil {
		return Bundle{}, nodeErr(err)
	}

	p := c.paths
	owned := func(f File) File {
		f.Owner, f.Group = c.consul.User, c.consul.Group
		return f
	}
	secretMode := fs.FileMode(0o600)
	if c.consul.Group != "" {
		secretMode = 0o640 // the agent reads it through the group
	}
	servicesMode := fs.FileMode(0o644)
	if c.aclOn {
		servicesMode = secretMode // it holds the services' tokens
	}
	b := Bundle{
		Node:       n.Name,
		Datacenter: n.Datacenter,
		Server:     n.IsServer(),
		Files: []File{
			owned(NewFile(p.ca, bytes.Clone(in.CABundle), 0o644, KindCACert)),
			owned(NewFile(p.cert, bytes.Clone(leaf.CertPEM), 0o644, KindCert)),
			owned(NewFile(p.key, bytes.Clone(leaf.KeyPEM), secretMode, KindKey)),
			owned(NewFile(p.agent, agent, secretMode, KindConfig)),
			owned(NewFile(p.services, services, servicesMode, KindService)),
			c.firewallFile(n, lis, ups),
			NewFile(p.ports, ports, 0o644, KindOther),
		},
	}
	if c.meshOn {
		c.addMesh(&b, n, lis, ups, regs, tokens)
	}
	b.Seal()
	return b, nil
}

// addMesh adds the node's units and firewall script to b and fills in
// b.Mesh.
func (c *cluster) addMesh(b *Bundle, n *inventory.Node, lis []proxyListener, ups []upstream, regs [][]byte, tokens NodeTokens) {
	m := &Mesh{UnitDir: c.mesh.unitDir, FirewallScript: c.paths.script, Proxies: make([]Proxy, 0, len(lis))}
	for i, l := range lis {
		unit := c.proxyUnit(l)
		p := Proxy{
			Unit: ProxyUnitName(l.ID), Service: l.ID, Class: l.Class, Ingress: l.Component != inventory.Egress,
			Digest: digest(unit, regs[i]),
		}
		if p.Ingress {
			p.Listen = net.JoinHostPort(n.Address, strconv.Itoa(l.Port))
			p.Target = net.JoinHostPort(loopback, strconv.Itoa(l.Target))
		} else {
			p.Listen = net.JoinHostPort(loopback, strconv.Itoa(l.Port))
			p.Upstreams = len(ups)
		}
		m.Proxies = append(m.Proxies, p)
		b.Files = append(b.Files, NewFile(c.unitPath(p.Unit), unit, 0o644, KindUnit))
		if c.aclOn {
			// The proxy reads it once, at start; the unit's digest covers the
			// registration, which holds the same token, so a new token
			// restarts the proxy.
			tf := NewFile(TokenFile(c.tokenDir, l.ID), tokenFileContent(tokens.Services[l.ID]), 0o600, KindToken)
			tf.Owner = c.mesh.proxyUser
			b.Files = append(b.Files, tf)
		}
	}
	rules := b.File(c.paths.firewall)
	m.FirewallDigest = digest(rules.Content, c.script.Content)
	b.Files = append(b.Files, c.script, c.fwUnit)
	b.Mesh = m
}

// digest is the first 16 hex digits of a SHA-256 over the parts, each
// followed by a NUL.
func digest(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// nodePaths are the absolute paths of the files on every node.
type nodePaths struct {
	ca, cert, key, agent, services, firewall, script, ports string
}

// newPaths fills in the defaults of the on-node directories (the validated
// topology has them already; a hand-built one may not) and checks they are
// absolute.
func newPaths(cl *inventory.Cluster) (nodePaths, inventory.Consul, error) {
	c := cl.Consul
	state := cl.NodeStateDir
	for _, d := range []struct {
		field string
		val   *string
		def   string
	}{
		{"consul.config_dir", &c.ConfigDir, "/etc/consul.d"},
		{"consul.tls_dir", &c.TLSDir, "/etc/consul.d/tls"},
		{"consul.data_dir", &c.DataDir, "/opt/consul"},
		{"node_state_dir", &state, DefaultNodeState},
	} {
		if *d.val == "" {
			*d.val = d.def
		}
		if !path.IsAbs(*d.val) || strings.ContainsAny(*d.val, "\x00\n") {
			return nodePaths{}, c, fmt.Errorf("%w: %s %q must be an absolute path on the nodes", ErrBadTopology, d.field, *d.val)
		}
		*d.val = path.Clean(*d.val)
	}
	if c.LogLevel == "" {
		c.LogLevel = "INFO"
	}
	if c.Domain == "" {
		c.Domain = "consul"
	}
	return nodePaths{
		ca:       path.Join(c.TLSDir, CAFileName),
		cert:     path.Join(c.TLSDir, CertFileName),
		key:      path.Join(c.TLSDir, KeyFileName),
		agent:    path.Join(c.ConfigDir, AgentConfigName),
		services: path.Join(c.ConfigDir, ServicesName),
		firewall: path.Join(state, FirewallName),
		script:   path.Join(state, FirewallScriptName),
		ports:    path.Join(state, PortsFileName),
	}, c, nil
}

// checkCABundle accepts one or more CERTIFICATE blocks and nothing else: in
// particular never a private key.
func checkCABundle(b []byte) error {
	rest := b
	certs := 0
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return fmt.Errorf("%w: it holds a %q PEM block; it must hold only CA certificates", ErrBadCABundle, blk.Type)
		}
		certs++
	}
	if certs == 0 {
		return fmt.Errorf("%w: no PEM certificate in it", ErrBadCABundle)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return fmt.Errorf("%w: trailing data after the last certificate", ErrBadCABundle)
	}
	return nil
}

func checkLeaf(l Leaf) error {
	if blk, _ := pem.Decode(l.CertPEM); blk == nil || blk.Type != "CERTIFICATE" {
		return fmt.Errorf("%w: the certificate is not a PEM CERTIFICATE", ErrBadLeaf)
	}
	if blk, _ := pem.Decode(l.KeyPEM); blk == nil || !strings.HasSuffix(blk.Type, "PRIVATE KEY") {
		return fmt.Errorf("%w: the key is not a PEM private key", ErrBadLeaf)
	}
	return nil
}

// checkGossipKey mirrors what memberlist accepts; the error never shows the key.
func checkGossipKey(k string) error {
	if k == "" {
		return fmt.Errorf("%w: empty; run `mtlsctl generate` to create it", ErrBadGossipKey)
	}
	raw, err := base64.StdEncoding.DecodeString(k)
	if err != nil {
		return fmt.Errorf("%w: not standard base64 (fingerprint %s)", ErrBadGossipKey, GossipKeyFingerprint(k))
	}
	switch len(raw) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("%w: %d bytes, want 16, 24 or 32 (fingerprint %s)", ErrBadGossipKey, len(raw), GossipKeyFingerprint(k))
}
