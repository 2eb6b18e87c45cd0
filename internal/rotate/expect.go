package rotate

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// Expected is the membership a rotation must reach: a key counts as
// installed only when every expected member holds it, so a member that is
// down (which Consul no longer counts in a pool's NumNodes once it is marked
// failed) still stops the rotation.
type Expected struct {
	// LAN lists the Consul node names of every datacenter's LAN pool.
	LAN map[string][]string
	// WAN lists the servers of every datacenter as the WAN pool names them
	// ("node.datacenter").
	WAN []string
}

// ExpectedFromTopology is the membership of a cluster file: every node in
// its datacenter's LAN pool, every server in the WAN pool. mtlsctl renders
// node_name as the node's name.
func ExpectedFromTopology(t *inventory.Topology) Expected {
	e := Expected{LAN: map[string][]string{}}
	for _, n := range t.Nodes {
		e.LAN[n.Datacenter] = append(e.LAN[n.Datacenter], n.Name)
		if n.IsServer() {
			e.WAN = append(e.WAN, n.Name+"."+n.Datacenter)
		}
	}
	return e
}

// opTimeout bounds one keyring operation: the servers run it on the WAN
// pool and on every datacenter's LAN pool, each a Serf query that waits for
// its timeout when a member does not answer; plus slack for the RPCs.
func (e Expected) opTimeout() time.Duration {
	d := QueryTimeout(max(len(e.WAN), 3), WANGossipInterval)
	if len(e.LAN) == 0 {
		return d + QueryTimeout(3, LANGossipInterval) + 5*time.Second
	}
	for _, names := range e.LAN {
		d += QueryTimeout(len(names), LANGossipInterval)
	}
	return d + 5*time.Second
}

func (e Expected) empty() bool { return len(e.LAN) == 0 && len(e.WAN) == 0 }

// PoolStatus is what one keyring pool reports, with keys as fingerprints.
type PoolStatus struct {
	// Pool is "<datacenter> LAN" or "WAN".
	Pool       string `json:"pool"`
	Datacenter string `json:"datacenter"`
	WAN        bool   `json:"wan"`
	// NumNodes is the pool's live member count as Consul reports it (a
	// failed member is not counted).
	NumNodes int `json:"num_nodes"`
	// Expected is the member count the cluster file says (0 when unknown).
	Expected int `json:"expected,omitempty"`
	// Keys maps key fingerprints to how many members hold them.
	Keys map[string]int `json:"keys"`
	// Primary maps key fingerprints to how many members use them as
	// primary; nil when the agent does not report it (Consul before 1.11).
	Primary map[string]int `json:"primary,omitempty"`
	// Messages are per-member notes or errors, by member name.
	Messages map[string]string `json:"messages,omitempty"`
}

// want is the member count a key must reach in the pool.
func (p PoolStatus) want() int { return max(p.NumNodes, p.Expected) }

func (p PoolStatus) String() string {
	fps := make([]string, 0, len(p.Keys))
	for fp := range p.Keys {
		fps = append(fps, fp)
	}
	sort.Strings(fps)
	var parts []string
	for _, fp := range fps {
		s := fmt.Sprintf("%s on %d/%d", fp, p.Keys[fp], p.want())
		if n, ok := p.Primary[fp]; ok && n > 0 {
			s += fmt.Sprintf(" (primary on %d)", n)
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		parts = []string{"no keys reported"}
	}
	return p.Pool + ": " + strings.Join(parts, ", ")
}

// pools turns a keyring listing into fingerprinted pool statuses, adding
// the expected member counts and a status for an expected pool that did not
// answer at all.
func pools(resp []*api.KeyringResponse, e Expected) []PoolStatus {
	var out []PoolStatus
	seen := map[string]bool{}
	for _, r := range resp {
		if r == nil {
			continue
		}
		p := PoolStatus{Datacenter: r.Datacenter, WAN: r.WAN, NumNodes: r.NumNodes, Keys: map[string]int{}, Messages: r.Messages}
		if r.WAN {
			p.Pool, p.Expected = "WAN", len(e.WAN)
		} else {
			p.Pool, p.Expected = r.Datacenter+" LAN", len(e.LAN[r.Datacenter])
		}
		if r.Segment != "" {
			p.Pool += " segment " + r.Segment
		}
		seen[p.Pool] = true
		for k, n := range r.Keys {
			p.Keys[ca.GossipFingerprint(k)] += n
		}
		if r.PrimaryKeys != nil {
			p.Primary = map[string]int{}
			for k, n := range r.PrimaryKeys {
				p.Primary[ca.GossipFingerprint(k)] += n
			}
		}
		out = append(out, p)
	}
	for dc, names := range e.LAN {
		if !seen[dc+" LAN"] {
			out = append(out, PoolStatus{Pool: dc + " LAN", Datacenter: dc, Expected: len(names), Keys: map[string]int{}})
		}
	}
	if len(e.WAN) > 0 && !seen["WAN"] {
		out = append(out, PoolStatus{Pool: "WAN", WAN: true, Expected: len(e.WAN), Keys: map[string]int{}})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].WAN != out[j].WAN {
			return !out[i].WAN
		}
		return out[i].Pool < out[j].Pool
	})
	return out
}

// lacking returns the pools in which fewer than all expected members hold
// the key with fingerprint fp, as "pool: n/m".
func lacking(ps []PoolStatus, fp string) []string {
	var out []string
	for _, p := range ps {
		if p.Keys[fp] < p.want() {
			out = append(out, fmt.Sprintf("%s: %d/%d", p.Pool, p.Keys[fp], p.want()))
		}
	}
	return out
}

// holding returns the pools in which some member still holds fp.
func holding(ps []PoolStatus, fp string) []string {
	var out []string
	for _, p := range ps {
		if p.Keys[fp] > 0 {
			out = append(out, fmt.Sprintf("%s: %d/%d", p.Pool, p.Keys[fp], p.want()))
		}
	}
	return out
}

// memberStatus names Serf's member states (api.MemberStatus values).
func memberStatus(s int) string {
	switch s {
	case 0:
		return "none"
	case 1:
		return "alive"
	case 2:
		return "leaving"
	case 3:
		return "left"
	case 4:
		return "failed"
	}
	return fmt.Sprintf("status %d", s)
}

// missingMembers names the members that cannot take part in a keyring
// operation: every member the agent sees that is not alive, and every
// expected member (of the agent's own datacenter, and of the WAN) that it
// does not see at all. Members of other datacenters' LAN pools are not
// visible from one agent: their pools' counts speak for them.
func missingMembers(ctx context.Context, m MemberLister, e Expected) ([]string, error) {
	var out []string
	var errs []string
	for _, wan := range []bool{false, true} {
		list, err := m.Members(ctx, wan)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		seen := map[string]bool{}
		dc := ""
		for _, mem := range list {
			seen[mem.Name] = true
			if !wan && dc == "" {
				dc = mem.Tags["dc"]
			}
			if mem.Status != 1 {
				pool := "LAN"
				if wan {
					pool = "WAN"
				}
				out = append(out, fmt.Sprintf("%s (%s, %s)", mem.Name, pool, memberStatus(mem.Status)))
			}
		}
		if !wan && dc == "" && len(e.LAN) == 1 {
			for only := range e.LAN {
				dc = only
			}
		}
		expect := e.WAN
		pool := "WAN"
		if !wan {
			expect, pool = e.LAN[dc], "LAN"
		}
		for _, name := range expect {
			if !seen[name] {
				out = append(out, fmt.Sprintf("%s (%s, not a member)", name, pool))
			}
		}
	}
	sort.Strings(out)
	out = slices.Compact(out)
	if len(errs) > 0 {
		return out, fmt.Errorf("list members: %s", strings.Join(errs, "; "))
	}
	return out, nil
}
