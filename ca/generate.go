package ca

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// ErrStale means the stored credentials do not cover the topology.
var ErrStale = errors.New("credentials are missing or out of date")

// DefaultRenewBefore is how long before expiry Generate reissues a leaf.
const DefaultRenewBefore = 30 * 24 * time.Hour

// GenerateOptions configures Generate. Zero values mean defaults.
type GenerateOptions struct {
	// CA configures the CA when there is none yet (ignored otherwise: an
	// existing CA is never replaced). Its Domain defaults to the cluster's.
	CA CAOptions
	// Leaf configures the leaves issued.
	Leaf IssueOptions
	// LeafDays is the validity of new leaves (default 365).
	LeafDays int
	// RenewBefore reissues leaves expiring within it (default 30 days).
	RenewBefore time.Duration
	// ReissueAll reissues every leaf (`mtlsctl rotate certs`).
	ReissueAll bool
	// Reissue reissues the leaves of these nodes (`mtlsctl rotate certs
	// --nodes`); a name the topology does not have is an error.
	Reissue []string
	// Ports, when set, is recorded in ports.json if it differs from it.
	Ports *inventory.Assignment
	// Rand is the randomness for the gossip key (default crypto/rand).
	Rand io.Reader
}

// Action is what Generate did to one item.
type Action string

// Actions.
const (
	Created  Action = "created"
	Reissued Action = "reissued"
	Kept     Action = "kept"
	Updated  Action = "updated"
)

// ItemResult is what Generate did to the CA or the gossip key.
type ItemResult struct {
	Action      Action    `json:"action"`
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject,omitempty"`
	NotAfter    time.Time `json:"not_after,omitzero"`
}

// NodeResult is what Generate did to one node's leaf, and why.
type NodeResult struct {
	Node        string    `json:"node"`
	Action      Action    `json:"action"`
	Reason      string    `json:"reason,omitempty"`
	Serial      string    `json:"serial"`
	NotAfter    time.Time `json:"not_after"`
	Fingerprint string    `json:"fingerprint"`
}

// GenerateReport says what Generate created, reissued and kept.
type GenerateReport struct {
	CA     ItemResult   `json:"ca"`
	Gossip ItemResult   `json:"gossip"`
	Nodes  []NodeResult `json:"nodes"`
	// Removed lists the nodes no longer in the topology whose certificate
	// was still in the state directory.
	Removed []string `json:"removed,omitempty"`
	// Archived says where each removed node's files were moved (nodes/
	// .archive/<node>-<UTC time>), in the order of Removed; nothing of
	// theirs is deleted.
	Archived []ArchivedNode `json:"archived,omitempty"`
	// Ports is "" when no assignment was given, else Created, Updated or Kept.
	Ports    Action   `json:"ports,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// ACL says what happened to the ACL tokens (nil with ACLs off); the
	// caller fills it in (see State.ACLTokens).
	ACL *ACLResult `json:"acl,omitempty"`
}

// ArchivedNode is a removed node's directory and where Generate moved it.
type ArchivedNode struct {
	Node string `json:"node"`
	Path string `json:"path"`
}

// ACLResult is what generate did to the ACL tokens: Created (the first
// time), Updated (tokens for new nodes or services) or Kept.
type ACLResult struct {
	Action Action `json:"action"`
	Tokens int    `json:"tokens"`
}

// Changed reports whether Generate wrote anything.
func (r *GenerateReport) Changed() bool {
	if r.CA.Action == Created || r.Gossip.Action == Created || r.Ports == Created || r.Ports == Updated {
		return true
	}
	if r.ACL != nil && r.ACL.Action != Kept {
		return true
	}
	if len(r.Archived) > 0 {
		return true
	}
	for _, n := range r.Nodes {
		if n.Action != Kept {
			return true
		}
	}
	return false
}

// lockedReader serialises a caller's reader for parallel issuance.
type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

// desiredSpecs returns the leaf spec of every node of t, in file order.
func desiredSpecs(t *inventory.Topology, days int) ([]LeafSpec, error) {
	if t == nil || t.Cluster == nil {
		return nil, errors.New("no topology: load the cluster file first")
	}
	var errs []error
	seen := map[string]bool{}
	specs := make([]LeafSpec, 0, len(t.Nodes))
	for _, n := range t.Nodes {
		if seen[n.Name] {
			errs = append(errs, &NodeError{Node: n.Name, Err: errors.New("listed twice in the topology")})
			continue
		}
		seen[n.Name] = true
		sp := LeafSpec{Node: n.Name, Datacenter: n.Datacenter, Domain: t.Cluster.Consul.Domain, Server: n.IsServer(), Days: days}
		if n.Address != "" && !n.IsTemplate() {
			sp.Addresses = []string{n.Address}
		}
		sp, err := sp.normalize()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		specs = append(specs, sp)
	}
	return specs, errors.Join(errs...)
}

// Generate makes whatever the topology needs and the state directory lacks:
// the CA and gossip key when there are none, and a leaf for every node that
// has none, or whose leaf no longer fits (name, addresses, datacenter,
// domain or role changed, issued by another CA, expiring within
// RenewBefore, or left inconsistent by an interrupted run). Everything else
// is left byte for byte as it was. The directories of nodes no longer in
// the topology are moved to nodes/.archive once everything else is written
// (see archiveRemoved), and listed in the report.
//
// All the work is done in memory first; nothing is written unless it all
// succeeded. The caller holds the state lock.
func (s *State) Generate(t *inventory.Topology, o GenerateOptions) (*GenerateReport, error) {
	rep, _, err := s.generate(t, o, true)
	return rep, err
}

// Preview is Generate without writing anything: the report of what
// generate would create, reissue and keep, and the credentials the nodes
// would then get. A leaf, CA or gossip key that generate would make is made
// here too, in memory only; its bytes are a stand-in (generate makes new
// ones), everything else is what the state holds. It works on a state
// directory that does not exist yet (see OpenOptions.AllowMissing).
func (s *State) Preview(t *inventory.Topology, o GenerateOptions) (*GenerateReport, *Credentials, error) {
	return s.generate(t, o, false)
}

func (s *State) generate(t *inventory.Topology, o GenerateOptions, write bool) (*GenerateReport, *Credentials, error) {
	specs, err := desiredSpecs(t, o.LeafDays)
	if err != nil {
		return nil, nil, err
	}
	reissue := make(map[string]bool, len(o.Reissue))
	for _, n := range o.Reissue {
		if !slices.ContainsFunc(specs, func(sp LeafSpec) bool { return sp.Node == n }) {
			return nil, nil, &NodeError{Node: n, Err: fmt.Errorf("reissue: not a node of %s: check the node names", t.Cluster.Source)}
		}
		reissue[n] = true
	}
	if err := CheckKeyType(o.Leaf.KeyType); err != nil {
		return nil, nil, fmt.Errorf("leaf keys: %w", err)
	}
	now := time.Now
	if o.Leaf.Now != nil {
		now = o.Leaf.Now
	}
	t0 := now()
	renew := cmp(o.RenewBefore, DefaultRenewBefore)
	rep := &GenerateReport{Nodes: make([]NodeResult, len(specs))}
	var caFiles, gossipFiles, leafFiles, portsFiles []pendingFile

	// The CA: loaded, or made when there is none; never replaced.
	c, err := s.LoadCA()
	switch {
	case errors.Is(err, ErrNoCA):
		co := o.CA
		co.Domain = cmp(co.Domain, t.Cluster.Consul.Domain)
		if c, err = newCA(co); err != nil {
			return nil, nil, err
		}
		caFiles = s.caWrites(c)
		rep.CA.Action = Created
	case err != nil:
		return nil, nil, err
	default:
		rep.CA.Action = Kept
	}
	rep.CA.Fingerprint, rep.CA.Subject, rep.CA.NotAfter = c.Fingerprint(), c.Cert.Subject.String(), c.Cert.NotAfter
	if left := c.Cert.NotAfter.Sub(t0); left < renew {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("the CA (fingerprint %s) expires on %s: leaves cannot outlive it; run `mtlsctl rotate ca`",
			short(c.Fingerprint()), c.Cert.NotAfter.Format(time.DateOnly)))
	}

	// The gossip keyring.
	kr, err := s.Keyring()
	switch {
	case errors.Is(err, ErrNoGossipKey):
		key, err := NewGossipKey(o.Rand)
		if err != nil {
			return nil, nil, err
		}
		kr = &Keyring{Primary: key}
		gossipFiles = []pendingFile{s.keyringWrite(kr)}
		rep.Gossip.Action = Created
	case err != nil:
		return nil, nil, err
	default:
		rep.Gossip.Action = Kept
	}
	rep.Gossip.Fingerprint = GossipFingerprint(kr.Primary)

	// The leaves: read and judge every node's in parallel, then issue those
	// needed in parallel.
	issue := o.Leaf
	if issue.Rand != nil {
		issue.Rand = &lockedReader{r: issue.Rand}
	}
	leaves := make([]*Leaf, len(specs))
	err = parallel(len(specs), func(i int) error {
		sp := specs[i]
		res := &rep.Nodes[i]
		res.Node = sp.Node
		st, err := s.readLeaf(sp.Node)
		switch {
		case err != nil:
			return err
		case st == nil:
			res.Action, res.Reason = Created, "no certificate"
		case st.broken != "":
			res.Action, res.Reason = Reissued, st.broken
		case o.ReissueAll || reissue[sp.Node]:
			res.Action, res.Reason = Reissued, "reissue requested"
		default:
			if why := st.staleness(sp, c, t0, renew); why != "" {
				res.Action, res.Reason = Reissued, why
			} else {
				res.Action = Kept
				leaves[i] = st.leaf
				return nil
			}
		}
		l, err := c.Issue(sp, issue)
		if err != nil {
			return &NodeError{Node: sp.Node, Err: err}
		}
		leaves[i] = l
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	for i, l := range leaves {
		res := &rep.Nodes[i]
		res.Serial, res.NotAfter, res.Fingerprint = serialHex(l.Cert), l.Cert.NotAfter, l.Fingerprint()
		if res.Action != Kept {
			leafFiles = append(leafFiles, s.leafWrites(l, c, issue.KeyType)...)
		}
	}

	stored, err := s.storedNodes()
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", s.path(nodesDir), err)
	}
	for _, n := range stored {
		if !slices.ContainsFunc(specs, func(sp LeafSpec) bool { return sp.Node == n }) {
			rep.Removed = append(rep.Removed, n)
		}
	}

	if o.Ports != nil {
		f, action, err := s.portsWrite(o.Ports)
		if err != nil {
			return nil, nil, err
		}
		rep.Ports = action
		if action != Kept {
			portsFiles = []pendingFile{f}
		}
	}

	if !write {
		bundle, err := s.caBundle(c)
		if err != nil {
			return nil, nil, err
		}
		cr := &Credentials{CABundlePEM: bundle, CAFingerprint: c.Fingerprint(), GossipKey: kr.Primary, Keyring: kr, Leaves: make(map[string]*Leaf, len(leaves))}
		for _, l := range leaves {
			cr.Leaves[l.Spec.Node] = l
		}
		return rep, cr, nil
	}
	// Write, in an order a re-run can always converge from: the CA first
	// (leaves are worthless without it), then the gossip key, the leaves
	// and the ports.
	for _, group := range [][]pendingFile{caFiles, gossipFiles, leafFiles, portsFiles} {
		if err := writeBatch(s.dir, group); err != nil {
			return nil, nil, err
		}
	}
	if rep.Archived, err = s.archiveRemoved(rep.Removed, t0); err != nil {
		return nil, nil, err
	}
	return rep, nil, nil
}

// Ports loads the recorded proxy-port assignment (nil, nil when none).
func (s *State) Ports() (*inventory.Assignment, error) {
	path := s.path(portsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read port assignment: %w", err)
	}
	var a inventory.Assignment
	if err := json.Unmarshal(data, &a); err != nil {
		return nil, fmt.Errorf("%w: %s: %v: restore it from a backup, or remove it to assign ports afresh (existing nodes may be renumbered)", ErrCorrupt, path, err)
	}
	return &a, nil
}

// SavePorts records the proxy-port assignment; it writes nothing when the
// recorded one is the same.
func (s *State) SavePorts(a *inventory.Assignment) error {
	f, action, err := s.portsWrite(a)
	if err != nil || action == Kept {
		return err
	}
	return writeBatch(s.dir, []pendingFile{f})
}

func (s *State) portsWrite(a *inventory.Assignment) (pendingFile, Action, error) {
	if a == nil {
		return pendingFile{}, "", errors.New("save ports: no assignment")
	}
	data, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return pendingFile{}, "", fmt.Errorf("save ports: %w", err)
	}
	data = append(data, '\n')
	f := pendingFile{path: s.path(portsFile), data: data, mode: publicMode}
	old, err := os.ReadFile(f.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return f, Created, nil
	case err != nil:
		return f, "", fmt.Errorf("read port assignment: %w", err)
	case bytes.Equal(old, data):
		return f, Kept, nil
	}
	return f, Updated, nil
}

// Credentials is what the nodes of a topology need from the state.
type Credentials struct {
	// CABundlePEM is the current CA followed by the trusted CAs of a rollover.
	CABundlePEM []byte
	// CAFingerprint identifies the current CA.
	CAFingerprint string
	// GossipKey is the primary gossip key; Keyring holds the previous ones too.
	GossipKey string
	Keyring   *Keyring
	// Leaves holds every node's leaf, by node name.
	Leaves map[string]*Leaf
}

// Credentials loads everything the nodes of t need. It changes nothing: if
// a node's leaf is missing, no longer fits the topology, was issued by a CA
// that is neither the current one nor still trusted (ca/trust, during a
// rollover) or has expired, it returns an error (matching ErrStale, with a
// *NodeError per node) that says to run `mtlsctl generate`.
func (s *State) Credentials(t *inventory.Topology) (*Credentials, error) {
	specs, err := desiredSpecs(t, 0)
	if err != nil {
		return nil, err
	}
	c, err := s.LoadCA()
	if err != nil {
		return nil, err
	}
	kr, err := s.Keyring()
	if err != nil {
		return nil, err
	}
	bundle, err := s.caBundle(c)
	if err != nil {
		return nil, err
	}
	// During a CA rollover the nodes keep, until their leaves are reissued,
	// leaves from a CA still in the trust list: those are current enough.
	trusted, err := s.TrustedCAs()
	if err != nil {
		return nil, err
	}
	issuers := make(map[string]*CA, len(trusted)+1)
	issuers[c.Fingerprint()] = c
	for _, tc := range trusted {
		fp := CertFingerprint(tc.Cert.Raw)
		if _, ok := issuers[fp]; !ok {
			issuers[fp] = newCAValue(tc.Cert, tc.CertPEM, nil, nil)
		}
	}
	now := time.Now()
	leaves := make([]*Leaf, len(specs))
	var stale []error
	var mu sync.Mutex
	err = parallel(len(specs), func(i int) error {
		sp := specs[i]
		st, err := s.readLeaf(sp.Node)
		if err != nil {
			return err
		}
		why := ""
		switch {
		case st == nil:
			why = "no certificate"
		case st.broken != "":
			why = st.broken
		default:
			issuer := c
			if i, ok := issuers[st.rec.CAFingerprint]; ok {
				issuer = i
			}
			why = st.staleness(sp, issuer, now, 0)
			if why == "" && !now.Before(st.leaf.Cert.NotAfter) {
				why = fmt.Sprintf("expired on %s", st.leaf.Cert.NotAfter.Format(time.DateOnly))
			}
		}
		if why != "" {
			mu.Lock()
			stale = append(stale, &NodeError{Node: sp.Node, Err: errors.New(why)})
			mu.Unlock()
			return nil
		}
		leaves[i] = st.leaf
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(stale) > 0 {
		slices.SortFunc(stale, func(a, b error) int {
			return strings.Compare(a.(*NodeError).Node, b.(*NodeError).Node)
		})
		return nil, fmt.Errorf("%w for %d node(s):\n%w", ErrStale, len(stale), errors.Join(stale...))
	}
	cr := &Credentials{
		CABundlePEM:   bundle,
		CAFingerprint: c.Fingerprint(),
		GossipKey:     kr.Primary,
		Keyring:       kr,
		Leaves:        make(map[string]*Leaf, len(specs)),
	}
	for _, l := range leaves {
		cr.Leaves[l.Spec.Node] = l
	}
	return cr, nil
}
