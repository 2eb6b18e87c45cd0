package distribute

import (
	"context"
	"errors"
	"time"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// Drift is one file whose state on the node differs from what mtlsctl
// recorded there at the last apply.
type Drift struct {
	Path   string `json:"path"`
	Reason string `json:"reason"` // missing, content, mode, not a regular file
}

// NodeStatus is what one node holds, read on the node.
type NodeStatus struct {
	Node string `json:"node"`
	// Address is the SSH endpoint the node was reached at (host:port).
	Address   string `json:"ssh_address"`
	Reachable bool   `json:"reachable"`
	// Generation is what the node recorded at its last apply ("" = never).
	Generation string `json:"current_generation,omitempty"`
	// Expected is the bundle's generation, when bundles were given.
	Expected string `json:"target_generation,omitempty"`
	// Pending is set when the node's generation is not the bundle's.
	Pending           bool      `json:"pending,omitempty"`
	CAFingerprint     string    `json:"ca_fingerprint,omitempty"`
	GossipFingerprint string    `json:"gossip_fingerprint,omitempty"`
	CertNotAfter      time.Time `json:"cert_not_after,omitzero"`
	CertSubject       string    `json:"cert_subject,omitempty"`
	Drift             []Drift   `json:"drift,omitempty"`
	Lock              *LockInfo `json:"lock,omitempty"`
	// Backups is how many backup generations (replaced files, keys
	// included) the node keeps under its state directory.
	Backups int    `json:"backup_generations"`
	Error   string `json:"error,omitempty"`
	// Err is the typed error (a *NodeError) when the node could not be read.
	Err error `json:"-"`
}

// StatusResult is the status of every node, in cluster-file order.
type StatusResult struct {
	Nodes []*NodeStatus `json:"nodes"`
}

// OK reports whether every node is reachable and free of drift (the CLI
// exits non-zero otherwise).
func (r *StatusResult) OK() bool {
	for _, n := range r.Nodes {
		if !n.Reachable || len(n.Drift) > 0 || n.Err != nil {
			return false
		}
	}
	return true
}

// Err joins the per-node errors.
func (r *StatusResult) Err() error {
	var errs []error
	for _, n := range r.Nodes {
		if n.Err != nil {
			errs = append(errs, n.Err)
		}
	}
	return errors.Join(errs...)
}

// Status reads every node's state: reachability, recorded generation, CA
// and gossip-key fingerprints (the key is hashed on the node), the leaf
// certificate's expiry and drift against the node's own manifest. Bundles
// are optional (nil: every node in the topology); when given, Pending says
// whether the node holds them. Node failures are in the result and in the
// returned error.
func Status(ctx context.Context, t *inventory.Topology, bundles []consulcfg.Bundle, o Options) (*StatusResult, error) {
	s, err := Open(t, o)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	return s.Status(ctx, bundles)
}

// Status reads every node's state (see the package function Status).
func (s *Session) Status(ctx context.Context, bundles []consulcfg.Bundle) (*StatusResult, error) {
	nodes := s.topo.Nodes
	var err error
	byNode := map[string]*consulcfg.Bundle{}
	if bundles != nil {
		if nodes, byNode, err = s.nodesFor(bundles); err != nil {
			return nil, err
		}
	}
	res := &StatusResult{}
	st := map[string]*NodeStatus{}
	for _, n := range nodes {
		ns := &NodeStatus{Node: n.Name, Address: s.addr(n)}
		if b := byNode[n.Name]; b != nil {
			ns.Expected = b.Generation
		}
		st[n.Name] = ns
		res.Nodes = append(res.Nodes, ns)
	}
	errs := s.forEach(ctx, nodes, 0, func(ctx context.Context, n *inventory.Node) error {
		return s.statusNode(ctx, n, st[n.Name], byNode[n.Name])
	})
	for name, err := range errs {
		st[name].Err = nodeErr(name, "status", err)
		st[name].Error = st[name].Err.Error()
	}
	return res, res.Err()
}

func (s *Session) statusNode(ctx context.Context, n *inventory.Node, ns *NodeStatus, b *consulcfg.Bundle) error {
	c, err := s.conn(ctx, n)
	if err != nil {
		return nodeErr(n.Name, "connect", err)
	}
	ns.Reachable = true
	var paths []string
	kinds := map[string]consulcfg.Kind{}
	if b != nil {
		for _, f := range b.Files {
			paths = append(paths, f.Path)
			kinds[f.Path] = f.Kind
		}
	}
	out, err := c.Run(ctx, "inspect", inspectScript(paths, s.stateDir(), true))
	if err != nil {
		return nodeErr(n.Name, "inspect", err)
	}
	r, err := parseInspect(out, s.o.LockTTL)
	if err != nil {
		return nodeErr(n.Name, "inspect", err)
	}
	ns.Generation, ns.Lock, ns.Backups = r.Generation, r.Lock, r.Backups
	ns.Pending = b != nil && b.Generation != r.Generation
	if r.Manifest != nil {
		for _, mf := range r.Manifest.Files {
			kinds[mf.Path] = mf.Kind
			rf := r.file(mf.Path)
			switch {
			case !rf.Exists:
				ns.Drift = append(ns.Drift, Drift{Path: mf.Path, Reason: "missing"})
			case rf.Link != "":
				ns.Drift = append(ns.Drift, Drift{Path: mf.Path, Reason: "symbolic link to " + rf.Link})
			case !rf.Regular:
				ns.Drift = append(ns.Drift, Drift{Path: mf.Path, Reason: "not a regular file"})
			case rf.SHA256 != mf.SHA256:
				ns.Drift = append(ns.Drift, Drift{Path: mf.Path, Reason: "content"})
			case modeString(rf.Mode) != mf.Mode:
				ns.Drift = append(ns.Drift, Drift{Path: mf.Path, Reason: "mode " + modeString(rf.Mode) + ", recorded " + mf.Mode})
			}
		}
	}
	var certs []string
	for _, p := range sortedKeys(kinds) {
		switch kinds[p] {
		case consulcfg.KindCACert, consulcfg.KindCert:
			if r.file(p).Regular {
				certs = append(certs, p)
			}
		case consulcfg.KindConfig:
			if fp := gossipFP(r.Gossip[p]); fp != "" && ns.GossipFingerprint == "" {
				ns.GossipFingerprint = fp
			}
		}
	}
	got, err := c.Download(ctx, certs, transport.MaxDownload)
	if err != nil {
		return nodeErr(n.Name, "read certificates", err)
	}
	for _, p := range certs {
		// Only what inspect hashed as a regular file counts (a link
		// swapped in meanwhile is not read through; see Download).
		content, note := checkedContent(got[p], r.file(p).SHA256)
		if note != "" {
			continue
		}
		switch kinds[p] {
		case consulcfg.KindCACert:
			ns.CAFingerprint = certFingerprint(content)
		case consulcfg.KindCert:
			if cert := firstCert(content); cert != nil {
				ns.CertNotAfter, ns.CertSubject = cert.NotAfter.UTC(), cert.Subject.CommonName
			}
		}
	}
	s.report(n.Name, "done", "", nil)
	return nil
}
