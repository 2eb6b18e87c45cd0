package consulapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"github.com/mtlsctl/mtlsctl/internal/fingerprint"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// Consul agent ports on 127.0.0.1 of every node, reached through the node's
// SSH connection: the HTTP API stays bound to loopback (Apigee requires it),
// and HTTPS is only used to read the certificate the agent serves.
const (
	agentHTTPAddr  = "127.0.0.1:8500"
	agentHTTPSAddr = "127.0.0.1:8503"
)

// pollInterval is how often WaitHealthy and RollingRestart look again.
const pollInterval = 500 * time.Millisecond

// callTimeout bounds one Consul API call made while gathering Health, so that
// one dead agent cannot stall the whole report.
const callTimeout = 10 * time.Second

// defaultWait bounds WaitHealthy when ctx has no deadline, and each server's
// return in RollingRestart when RollOptions.Timeout is zero.
const defaultWait = 2 * time.Minute

// ErrNotHealthy is wrapped by WaitHealthy and RollingRestart when the cluster
// did not reach the wanted state in time; the message lists what was missing.
var ErrNotHealthy = errors.New("consul cluster not healthy")

// Cluster is a handle on the live Consul cluster: one SSH connection per node
// (made on first use and shared by every call), Consul API clients that
// reach each node's 127.0.0.1:8500 through that connection, and the
// restart/reload commands. It is safe for concurrent use. Close it when done.
type Cluster struct {
	p    *transport.Pool
	topo *inventory.Topology
	own  bool // Close closes p

	mu      sync.Mutex
	apis    map[string]*api.Client
	bundles map[string]*consulcfg.Bundle
	// acl: see SetACL; aclSynced once the tokens were made this run;
	// aclMu serialises ensureACL.
	acl       ACLConfig
	aclSynced bool
	aclMu     sync.Mutex
}

// Dial returns a handle on the cluster t describes, with connections of
// its own. It connects lazily: no node is contacted until a method needs it.
func Dial(ctx context.Context, t *inventory.Topology, o transport.Options) (*Cluster, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := transport.New(t, o)
	if err != nil {
		return nil, err
	}
	c := On(p)
	c.own = true
	return c, nil
}

// On returns a handle on the cluster that uses p's connections (a command
// that also plans or applies shares one connection per node). Closing it
// leaves p open.
func On(p *transport.Pool) *Cluster {
	return &Cluster{p: p, topo: p.Topology(), apis: map[string]*api.Client{}, bundles: map[string]*consulcfg.Bundle{}}
}

// Close closes the SSH connections when the Cluster made them (Dial).
func (c *Cluster) Close() error {
	if c.own {
		c.p.Close()
	}
	return nil
}

// SetBundles records what each node should hold, so that Health can check
// that every agent serves the certificate mtlsctl issued. The bundle's key is
// used as the TLS client certificate (the agents verify incoming HTTPS
// clients) and its CA file as the trust anchors; nothing is printed.
func (c *Cluster) SetBundles(bundles []consulcfg.Bundle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bundles = map[string]*consulcfg.Bundle{}
	for i := range bundles {
		c.bundles[bundles[i].Node] = &bundles[i]
	}
}

func (c *Cluster) node(name string) (*inventory.Node, error) {
	n := c.topo.Node(name)
	if n == nil {
		return nil, fmt.Errorf("node %q is not in the cluster file %s", name, c.topo.Cluster.Source)
	}
	return n, nil
}

// tunnel opens a TCP connection to addr on the node, through its SSH
// connection (reconnecting once if the connection was lost).
func (c *Cluster) tunnel(ctx context.Context, n *inventory.Node, addr string) (net.Conn, error) {
	nc, err := c.p.Conn(ctx, n)
	if err != nil {
		return nil, transport.WrapNode(n.Name, "connect", err)
	}
	conn, err := nc.Dial(ctx, addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, transport.WrapNode(n.Name, "tunnel", fmt.Errorf("%s on the node: %w (is the Consul agent running?)", addr, err))
	}
	return conn, nil
}

// API returns a Consul API client for the agent on node. Every request goes
// through the node's SSH connection to 127.0.0.1:8500 on the node, so the
// HTTP port never needs to listen beyond loopback. Pass a context to each
// call with QueryOptions.WithContext; requests also time out after
// Options.StepTimeout.
func (c *Cluster) API(ctx context.Context, node string) (*api.Client, error) {
	n, err := c.node(node)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	cl := c.apis[node]
	c.mu.Unlock()
	if cl != nil {
		return cl, nil
	}
	if _, err := c.p.Conn(ctx, n); err != nil {
		return nil, transport.WrapNode(n.Name, "connect", err)
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.tunnel(ctx, n, agentHTTPAddr)
		},
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}
	cl, err = api.NewClient(&api.Config{
		Address:    agentHTTPAddr,
		Scheme:     "http",
		HttpClient: &http.Client{Transport: tokenTransport{c: c, base: tr}, Timeout: c.p.Options().StepTimeout},
	})
	if err != nil {
		return nil, transport.WrapNode(n.Name, "consul api", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.apis[node]; old != nil {
		return old, nil
	}
	c.apis[node] = cl
	return cl, nil
}

// Restart runs the cluster's restart_command on node.
func (c *Cluster) Restart(ctx context.Context, node string) error {
	return c.command(ctx, node, "restart", c.topo.Cluster.Consul.RestartCommand)
}

// Reload runs the cluster's reload_command on node (SIGHUP: certificates,
// CA files and services are reloaded, the agent keeps running).
func (c *Cluster) Reload(ctx context.Context, node string) error {
	return c.command(ctx, node, "reload", c.topo.Cluster.Consul.ReloadCommand)
}

func (c *Cluster) command(ctx context.Context, node, what, command string) error {
	n, err := c.node(node)
	if err != nil {
		return err
	}
	if strings.TrimSpace(command) == "" {
		return fmt.Errorf("consul.%s_command is empty in %s", what, c.topo.Cluster.Source)
	}
	nc, err := c.p.Conn(ctx, n)
	if err != nil {
		return transport.WrapNode(node, "connect", err)
	}
	c.p.Report(node, what, command, nil)
	if _, err := nc.Run(ctx, what, CommandScript(command)); err != nil {
		c.p.Report(node, what, "", err)
		return transport.WrapNode(node, what, err)
	}
	return nil
}

// CertCheck says whether an agent serves the certificate mtlsctl issued.
type CertCheck struct {
	// Expected is the fingerprint (sha256:hex of the DER) of the bundle's
	// certificate; Served the one the agent presented on its HTTPS port.
	Expected string `json:"expected"`
	Served   string `json:"served,omitempty"`
	Match    bool   `json:"match"`
	// Verified is set when the served chain verified against the bundle's CA
	// file with the name "localhost" (every leaf carries it).
	Verified bool   `json:"verified"`
	Error    string `json:"error,omitempty"`
}

// CheckCert connects to the agent's HTTPS port (127.0.0.1:8503 on the node,
// through the SSH tunnel) with the bundle's certificate as client
// certificate, verifies the served chain against the bundle's CA file and
// compares the served leaf with the bundle's.
func (c *Cluster) CheckCert(ctx context.Context, b *consulcfg.Bundle) CertCheck {
	var cc CertCheck
	var certPEM, keyPEM, caPEM []byte
	for _, f := range b.Files {
		switch f.Kind {
		case consulcfg.KindCert:
			certPEM = f.Content
		case consulcfg.KindKey:
			keyPEM = f.Content
		case consulcfg.KindCACert:
			caPEM = f.Content
		}
	}
	cc.Expected = pemFingerprint(certPEM)
	n, err := c.node(b.Node)
	if err != nil {
		cc.Error = err.Error()
		return cc
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		cc.Error = "the bundle's certificate and key do not load: " + errors.Unwrap(err).Error()
		return cc
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		cc.Error = "the bundle has no usable CA certificate"
		return cc
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	raw, err := c.tunnel(ctx, n, agentHTTPSAddr)
	if err != nil {
		cc.Error = err.Error()
		return cc
	}
	defer raw.Close()
	tc := tls.Client(raw, &tls.Config{
		ServerName:   "localhost",
		RootCAs:      pool,
		Certificates: []tls.Certificate{pair},
		MinVersion:   tls.VersionTLS12,
	})
	err = tc.HandshakeContext(ctx)
	var served *x509.Certificate
	var cve *tls.CertificateVerificationError
	switch {
	case err == nil:
		cc.Verified = true
		if pcs := tc.ConnectionState().PeerCertificates; len(pcs) > 0 {
			served = pcs[0]
		}
	case errors.As(err, &cve):
		if len(cve.UnverifiedCertificates) > 0 {
			served = cve.UnverifiedCertificates[0]
		}
		cc.Error = "the served certificate does not verify against the bundle's CA: " + cve.Err.Error()
	default:
		cc.Error = transport.WrapNode(n.Name, "tls handshake", err).Error()
	}
	if served != nil {
		cc.Served = derFingerprint(served.Raw)
		cc.Match = cc.Served == cc.Expected && cc.Expected != ""
	}
	return cc
}

// derFingerprint is how mtlsctl shows a certificate (fingerprint.Cert).
func derFingerprint(der []byte) string { return fingerprint.Cert(der) }

// pemFingerprint is the fingerprint of the first certificate in a PEM bundle.
func pemFingerprint(data []byte) string {
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			return ""
		}
		if blk.Type == "CERTIFICATE" {
			return fingerprint.Cert(blk.Bytes)
		}
	}
}

// CommandScript is the step that runs a cluster-file command (reload,
// restart) on a node: through `sh -c`, with no stdin.
func CommandScript(command string) string {
	return "sh -c " + transport.Quote(command) + " </dev/null\n"
}
