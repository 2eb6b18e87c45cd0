package consulapi

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/internal/fingerprint"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// Serf member statuses, as Health reports them.
const (
	MemberAlive   = "alive"
	MemberLeaving = "leaving"
	MemberLeft    = "left"
	MemberFailed  = "failed"
	MemberNone    = "none"
)

// memberStatus names serf.MemberStatus values (the API returns the number).
func memberStatus(s int) string {
	switch s {
	case 1:
		return MemberAlive
	case 2:
		return MemberLeaving
	case 3:
		return MemberLeft
	case 4:
		return MemberFailed
	}
	return MemberNone
}

// Member is one entry of a gossip pool's member list.
type Member struct {
	// Name is the node name; in the WAN pool it is "node.datacenter".
	Name       string `json:"name"`
	Address    string `json:"address"`
	Status     string `json:"status"`
	Server     bool   `json:"server"`
	Datacenter string `json:"datacenter,omitempty"`
}

// RaftPeer is one server in a datacenter's Raft configuration.
type RaftPeer struct {
	Node    string `json:"node"`
	Address string `json:"address"`
	Leader  bool   `json:"leader,omitempty"`
	Voter   bool   `json:"voter"`
}

// KeyCount is one gossip key of a keyring pool, by fingerprint (the key
// itself is never kept).
type KeyCount struct {
	Fingerprint string `json:"fingerprint"`
	// Nodes is how many members hold the key; PrimaryNodes how many use it
	// as their primary key (Consul >= 1.11 reports it; 0 before).
	Nodes        int `json:"nodes"`
	PrimaryNodes int `json:"primary_nodes,omitempty"`
}

// KeyringPool is the keyring of one gossip pool: the LAN pool of a
// datacenter, or the WAN pool (servers of every datacenter).
type KeyringPool struct {
	WAN        bool       `json:"wan"`
	Datacenter string     `json:"datacenter"`
	Segment    string     `json:"segment,omitempty"`
	NumNodes   int        `json:"num_nodes"`
	Keys       []KeyCount `json:"keys"`
	// Messages are Serf's per-node answers when some failed.
	Messages map[string]string `json:"messages,omitempty"`
}

// Key returns the pool's entry for the key with fingerprint fp, or nil.
func (p *KeyringPool) Key(fp string) *KeyCount {
	for i := range p.Keys {
		if p.Keys[i].Fingerprint == fp {
			return &p.Keys[i]
		}
	}
	return nil
}

// DCHealth is one datacenter as seen by one of its agents.
type DCHealth struct {
	Name string `json:"name"`
	// Via is the node whose agent answered (servers are asked first).
	Via string `json:"via,omitempty"`
	// Leader is the leader's node name ("" when there is none);
	// LeaderAddress its RPC address.
	Leader        string     `json:"leader,omitempty"`
	LeaderAddress string     `json:"leader_address,omitempty"`
	Peers         []RaftPeer `json:"peers"`
	Members       []Member   `json:"members"`
	// WAN is the WAN pool as a server of this datacenter sees it (set only
	// for multi-datacenter clusters).
	WAN   []Member `json:"wan,omitempty"`
	Error string   `json:"error,omitempty"`
}

// Member returns the LAN member called name, or nil.
func (d *DCHealth) Member(name string) *Member { return findMember(d.Members, name) }

// WANMember returns the WAN member for node name of datacenter dc, or nil.
func (d *DCHealth) WANMember(name, dc string) *Member { return findMember(d.WAN, name+"."+dc) }

func findMember(ms []Member, name string) *Member {
	for i := range ms {
		if ms[i].Name == name {
			return &ms[i]
		}
	}
	return nil
}

// Quorum reports whether the datacenter has a leader and a majority of its
// Raft voters alive in the LAN pool, with the counts.
func (d *DCHealth) Quorum() (alive, voters int, ok bool) {
	for _, p := range d.Peers {
		if !p.Voter {
			continue
		}
		voters++
		if m := d.Member(p.Node); m != nil && m.Status == MemberAlive {
			alive++
		}
	}
	return alive, voters, d.Leader != "" && voters > 0 && alive > voters/2
}

// NodeHealth is one node's part of the Health report.
type NodeHealth struct {
	Node       string `json:"node"`
	Datacenter string `json:"datacenter"`
	Server     bool   `json:"server"`
	// Member is the node's status in its datacenter's LAN pool ("" when the
	// datacenter could not be asked, "none" when it is not a member).
	Member string `json:"member"`
	// Cert is set when bundles are known (Cluster.SetBundles).
	Cert *CertCheck `json:"cert,omitempty"`
}

// Health is a snapshot of the live cluster. It holds no secret (gossip
// keys appear as fingerprints) and is JSON-serialisable.
type Health struct {
	Time        time.Time     `json:"time"`
	Datacenters []*DCHealth   `json:"datacenters"`
	Keyring     []KeyringPool `json:"keyring,omitempty"`
	// KeyringError says why the keyring could not be listed.
	KeyringError string `json:"keyring_error,omitempty"`
	// ACLError says why the ACL system could not be bootstrapped or its
	// tokens made.
	ACLError string `json:"acl_error,omitempty"`
	// ACL is the ACL system's state (the full report only; nil with ACLs
	// off in the cluster file).
	ACL   *ACLStatus    `json:"acl,omitempty"`
	Nodes []*NodeHealth `json:"nodes"`
}

// DC returns the datacenter called name, or nil.
func (h *Health) DC(name string) *DCHealth {
	for _, d := range h.Datacenters {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// Node returns the node called name, or nil.
func (h *Health) Node(name string) *NodeHealth {
	for _, n := range h.Nodes {
		if n.Node == name {
			return n
		}
	}
	return nil
}

// Want is the state WaitHealthy waits for.
type Want struct {
	// Nodes must be alive in their datacenter's LAN pool, the servers
	// among them Raft voters and alive in the WAN pool (multi-DC). Every
	// datacenter with a wanted node must have a leader. nil means every
	// node of the cluster file.
	Nodes []string `json:"nodes,omitempty"`
	// Certs also requires every wanted node to serve the certificate of
	// its bundle (see Cluster.SetBundles).
	Certs bool `json:"certs,omitempty"`
	// Key, a gossip key fingerprint (fingerprint.Gossip), must be held by
	// every member of every keyring pool.
	Key string `json:"key,omitempty"`
}

// healthOpts says what a health pass gathers beyond leaders and members.
type healthOpts struct {
	keyring bool
	certs   bool
	dcs     map[string]bool // nil: all
	// acl lists the tokens for the report (Health only: the wait loops
	// do not need it on every poll).
	acl bool
}

// Health asks, per datacenter, one agent (servers first) for the leader,
// the Raft configuration and the LAN members (and a server for the WAN
// members), lists the keyring once, and checks on every node with a bundle
// that the agent serves the certificate mtlsctl issued. Problems with a
// node or a datacenter are recorded in the report; the error is non-nil
// only when no agent at all could be asked or ctx ended.
func (c *Cluster) Health(ctx context.Context) (*Health, error) {
	return c.health(ctx, healthOpts{keyring: true, certs: true, acl: true})
}

func (c *Cluster) health(ctx context.Context, o healthOpts) (*Health, error) {
	t := c.topo
	h := &Health{Time: time.Now().UTC()}
	if err := c.ensureACL(ctx); err != nil {
		h.ACLError = err.Error()
		if errors.Is(err, ErrACLBootstrapped) || ctx.Err() != nil {
			return h, err
		}
	}
	var wg sync.WaitGroup
	for _, dc := range t.Cluster.Datacenters {
		if o.dcs != nil && !o.dcs[dc.Name] {
			continue
		}
		d := &DCHealth{Name: dc.Name}
		h.Datacenters = append(h.Datacenters, d)
		wg.Go(func() { c.dcHealth(ctx, d) })
	}
	c.mu.Lock()
	bundles := c.bundles
	c.mu.Unlock()
	certs := map[string]*CertCheck{}
	var cmu sync.Mutex
	if o.certs && len(bundles) > 0 {
		var nodes []*inventory.Node
		for _, n := range t.Nodes {
			if bundles[n.Name] != nil && (o.dcs == nil || o.dcs[n.Datacenter]) {
				nodes = append(nodes, n)
			}
		}
		wg.Go(func() {
			c.p.ForEach(ctx, nodes, 0, func(ctx context.Context, n *inventory.Node) error {
				cc := c.CheckCert(ctx, bundles[n.Name])
				cmu.Lock()
				certs[n.Name] = &cc
				cmu.Unlock()
				return nil
			})
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return h, err
	}
	if o.keyring {
		c.keyring(ctx, h)
	}
	if o.acl {
		c.mu.Lock()
		on := c.acl.Enabled
		c.mu.Unlock()
		if on {
			h.ACL = c.ACLStatus(ctx)
		}
	}
	asked := false
	for _, n := range t.Nodes {
		d := h.DC(n.Datacenter)
		if d == nil {
			continue
		}
		nh := &NodeHealth{Node: n.Name, Datacenter: n.Datacenter, Server: n.IsServer(), Cert: certs[n.Name]}
		if d.Via != "" {
			asked = true
			nh.Member = MemberNone
			if m := d.Member(n.Name); m != nil {
				nh.Member = m.Status
			}
		}
		h.Nodes = append(h.Nodes, nh)
	}
	if !asked {
		var errs []error
		for _, d := range h.Datacenters {
			errs = append(errs, fmt.Errorf("datacenter %s: %s", d.Name, d.Error))
		}
		return h, fmt.Errorf("%w: no Consul agent answered: %w", ErrNotHealthy, errors.Join(errs...))
	}
	return h, nil
}

// candidates lists a datacenter's nodes, servers first, in file order.
func (c *Cluster) candidates(dc string) []*inventory.Node {
	var servers, clients []*inventory.Node
	for _, n := range c.topo.Nodes {
		if n.Datacenter != dc {
			continue
		}
		if n.IsServer() {
			servers = append(servers, n)
		} else {
			clients = append(clients, n)
		}
	}
	return append(servers, clients...)
}

// query runs fn against a node's API with a per-call deadline.
func (c *Cluster) query(ctx context.Context, node string, fn func(*api.Client, *api.QueryOptions) error) error {
	cl, err := c.API(ctx, node)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return fn(cl, (&api.QueryOptions{}).WithContext(ctx))
}

func (c *Cluster) dcHealth(ctx context.Context, d *DCHealth) {
	var errs []string
	for _, n := range c.candidates(d.Name) {
		var leader string
		err := c.query(ctx, n.Name, func(cl *api.Client, q *api.QueryOptions) error {
			var err error
			leader, err = cl.Status().LeaderWithQueryOptions(q)
			return err
		})
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", n.Name, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		d.Via, d.LeaderAddress = n.Name, leader
		var problems []string
		err = c.query(ctx, n.Name, func(cl *api.Client, q *api.QueryOptions) error {
			q.AllowStale = true // the peers are worth showing even without a leader
			rc, err := cl.Operator().RaftGetConfiguration(q)
			if err != nil {
				return err
			}
			for _, s := range rc.Servers {
				d.Peers = append(d.Peers, RaftPeer{Node: s.Node, Address: s.Address, Leader: s.Leader, Voter: s.Voter})
				if s.Address == leader && leader != "" {
					d.Leader = s.Node
				}
			}
			return nil
		})
		if err != nil {
			problems = append(problems, "raft configuration: "+err.Error())
		}
		err = c.query(ctx, n.Name, func(cl *api.Client, q *api.QueryOptions) error {
			ms, err := cl.Agent().Members(false)
			d.Members = members(ms)
			return err
		})
		if err != nil {
			problems = append(problems, "members: "+err.Error())
		}
		if c.topo.MultiDC() {
			if n.IsServer() {
				err = c.query(ctx, n.Name, func(cl *api.Client, q *api.QueryOptions) error {
					ms, err := cl.Agent().Members(true)
					d.WAN = members(ms)
					return err
				})
				if err != nil {
					problems = append(problems, "WAN members: "+err.Error())
				}
			} else {
				problems = append(problems, "no server answered, so the WAN pool is unknown")
			}
		}
		if len(problems) > 0 {
			d.Error = strings.Join(problems, "; ")
		}
		return
	}
	d.Error = "no agent answered: " + strings.Join(errs, "; ")
}

func members(ms []*api.AgentMember) []Member {
	out := make([]Member, 0, len(ms))
	for _, m := range ms {
		out = append(out, Member{Name: m.Name, Address: m.Addr, Status: memberStatus(m.Status),
			Server: m.Tags["role"] == "consul", Datacenter: m.Tags["dc"]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// keyringAttempts bounds the keyring listings of one health pass: a listing
// is a Serf query, and a member that misses its deadline (a busy node, say
// while its proxies start) fails the whole answer ("4/5 nodes reported
// success") although the next query succeeds.
const keyringAttempts = 3

// keyring lists the gossip keyring through the first datacenter's
// answering agent (the servers gather every pool of every datacenter),
// trying again when a member missed the query's deadline.
func (c *Cluster) keyring(ctx context.Context, h *Health) {
	via := ""
	for _, d := range h.Datacenters {
		if d.Via != "" {
			via = d.Via
			break
		}
	}
	if via == "" {
		h.KeyringError = "no agent answered"
		return
	}
	var resp []*api.KeyringResponse
	var err error
	for attempt := 1; ; attempt++ {
		err = c.query(ctx, via, func(cl *api.Client, q *api.QueryOptions) error {
			var err error
			resp, err = cl.Operator().KeyringList(q)
			return err
		})
		if err == nil || attempt == keyringAttempts || !strings.Contains(err.Error(), "reported success") {
			break
		}
		t := time.NewTimer(pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		h.KeyringError = err.Error()
	}
	h.Keyring = keyringPools(resp)
}

// keyringPools converts the API answer, replacing every key by its
// fingerprint.
func keyringPools(resp []*api.KeyringResponse) []KeyringPool {
	var out []KeyringPool
	for _, r := range resp {
		p := KeyringPool{WAN: r.WAN, Datacenter: r.Datacenter, Segment: r.Segment, NumNodes: r.NumNodes, Messages: r.Messages}
		for k, n := range r.Keys {
			p.Keys = append(p.Keys, KeyCount{Fingerprint: fingerprint.Gossip(k), Nodes: n, PrimaryNodes: r.PrimaryKeys[k]})
		}
		sort.Slice(p.Keys, func(i, j int) bool { return p.Keys[i].Fingerprint < p.Keys[j].Fingerprint })
		out = append(out, p)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].WAN != out[j].WAN {
			return !out[i].WAN
		}
		return out[i].Datacenter < out[j].Datacenter
	})
	return out
}

// Problems lists, in words, how h falls short of want (nil: healthy).
func (h *Health) Problems(t *inventory.Topology, want Want) []string {
	wanted, err := wantedNodes(t, want.Nodes)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	if h.ACLError != "" {
		out = append(out, "ACL: "+h.ACLError)
	}
	if a := h.ACL; a != nil && a.Enabled {
		switch {
		case a.Error != "":
			out = append(out, "ACL: "+a.Error)
		case a.Present < a.Expected:
			out = append(out, fmt.Sprintf("ACL: Consul holds %d of the %d agent and service tokens (missing: %s); run `mtlsctl apply` to make them", a.Present, a.Expected, strings.Join(a.Missing, ", ")))
		}
	}
	dcs := map[string]bool{}
	for _, n := range wanted {
		dcs[n.Datacenter] = true
	}
	for _, dc := range t.Cluster.Datacenters {
		if !dcs[dc.Name] {
			continue
		}
		d := h.DC(dc.Name)
		switch {
		case d == nil:
			out = append(out, fmt.Sprintf("datacenter %s was not asked", dc.Name))
			continue
		case d.Via == "":
			out = append(out, fmt.Sprintf("datacenter %s: %s", dc.Name, d.Error))
			continue
		case d.Leader == "":
			out = append(out, fmt.Sprintf("datacenter %s has no leader", dc.Name))
		}
	}
	for _, n := range wanted {
		d := h.DC(n.Datacenter)
		if d == nil || d.Via == "" {
			continue
		}
		if m := d.Member(n.Name); m == nil {
			out = append(out, fmt.Sprintf("%s is not a member of %s", n.Name, n.Datacenter))
		} else if m.Status != MemberAlive {
			out = append(out, fmt.Sprintf("%s is %s", n.Name, m.Status))
		}
		if n.IsServer() {
			voter := false
			for _, p := range d.Peers {
				if p.Node == n.Name && p.Voter {
					voter = true
				}
			}
			if !voter {
				out = append(out, fmt.Sprintf("server %s is not a raft voter", n.Name))
			}
			if t.MultiDC() {
				if m := d.WANMember(n.Name, n.Datacenter); m == nil || m.Status != MemberAlive {
					st := "missing"
					if m != nil {
						st = m.Status
					}
					out = append(out, fmt.Sprintf("server %s is %s in the WAN pool", n.Name, st))
				}
			}
		}
		if want.Certs {
			nh := h.Node(n.Name)
			switch {
			case nh == nil || nh.Cert == nil:
				out = append(out, fmt.Sprintf("%s: certificate not checked (no bundle)", n.Name))
			case !nh.Cert.Match:
				msg := fmt.Sprintf("%s serves %s, not the issued %s", n.Name, orDash(nh.Cert.Served), nh.Cert.Expected)
				if nh.Cert.Error != "" {
					msg += " (" + nh.Cert.Error + ")"
				}
				out = append(out, msg)
			}
		}
	}
	if want.Key != "" {
		if h.KeyringError != "" {
			out = append(out, "keyring: "+h.KeyringError)
		}
		for _, p := range h.Keyring {
			k := p.Key(want.Key)
			if k == nil || k.Nodes < p.NumNodes {
				have := 0
				if k != nil {
					have = k.Nodes
				}
				out = append(out, fmt.Sprintf("key %s is on %d of %d members of the %s pool", want.Key, have, p.NumNodes, poolName(p)))
			}
		}
	}
	return out
}

func poolName(p KeyringPool) string {
	if p.WAN {
		return "WAN"
	}
	return p.Datacenter + " LAN"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func wantedNodes(t *inventory.Topology, names []string) ([]*inventory.Node, error) {
	if names == nil {
		return t.Nodes, nil
	}
	var out []*inventory.Node
	for _, name := range names {
		n := t.Node(name)
		if n == nil {
			return nil, fmt.Errorf("node %q is not in the cluster file", name)
		}
		out = append(out, n)
	}
	return out, nil
}

// WaitHealthy polls the cluster every 500 ms until it is as want says and
// returns that Health. When ctx ends first (without a deadline, after 2
// minutes) it returns the last Health and an error wrapping ErrNotHealthy
// that lists what was still missing.
func (c *Cluster) WaitHealthy(ctx context.Context, want Want) (*Health, error) {
	wanted, err := wantedNodes(c.topo, want.Nodes)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultWait)
		defer cancel()
	}
	o := healthOpts{keyring: want.Key != "", certs: want.Certs, dcs: map[string]bool{}}
	for _, n := range wanted {
		o.dcs[n.Datacenter] = true
	}
	start := time.Now()
	var last *Health
	var problems []string
	for {
		h, herr := c.health(ctx, o)
		if h != nil {
			last = h
			problems = h.Problems(c.topo, want)
			if herr != nil && len(problems) == 0 {
				problems = []string{herr.Error()}
			}
			if len(problems) == 0 {
				return h, nil
			}
		}
		t := time.NewTimer(pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return last, fmt.Errorf("%w after %s: %s", ErrNotHealthy, time.Since(start).Round(100*time.Millisecond), strings.Join(problems, "; "))
		case <-t.C:
		}
	}
}
