package consulapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/internal/fingerprint"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// Consul's built-in ACL objects.
const (
	anonymousAccessor      = "00000000-0000-0000-0000-000000000002"
	globalManagementPolicy = "00000000-0000-0000-0000-000000000001"
	// DNSPolicy is the anonymous token's policy: what DNS lookups need
	// (node and service names and addresses), nothing else.
	DNSPolicy = "mtlsctl-anonymous-dns"
	dnsRules  = "node_prefix \"\" {\n  policy = \"read\"\n}\nservice_prefix \"\" {\n  policy = \"read\"\n}\n"
)

// ErrACLBootstrapped means the cluster's ACL system was bootstrapped before
// and this state directory does not hold the management token.
var ErrACLBootstrapped = errors.New("the ACL system was already bootstrapped")

// ErrACLDisabled means the agents asked run without ACLs (not restarted
// with the new config yet).
var ErrACLDisabled = errors.New("the agents run without ACLs")

// TokenSpec is one token mtlsctl keeps in Consul: an agent's (Node set:
// node write on that node, service read) or a service's (Service set: the
// service's identity, which is what its proxy needs).
type TokenSpec struct {
	AccessorID string
	SecretID   string
	Node       string
	Service    string
	// Replication: the secondary datacenters' servers' token (Node and
	// Service empty): operator write for the Connect CA the primary signs,
	// intentions read to replicate them.
	Replication bool
}

// ACLConfig is what a Cluster needs to use and keep the ACL system.
type ACLConfig struct {
	// Enabled: the cluster file turns ACLs on.
	Enabled bool
	// Cluster names the cluster in token descriptions; tokens whose
	// description starts with "mtlsctl <Cluster>:" are mtlsctl's.
	Cluster string
	// Token is the management token ("" before the bootstrap).
	Token string
	// Save stores the management token the bootstrap returns, before it
	// is used: a bootstrap cannot be repeated.
	Save func(token string) error
	// Tokens are the agent and service tokens Consul must hold.
	Tokens []TokenSpec
	// ReadOnly: use the token, never bootstrap or write tokens (status,
	// plan, verify).
	ReadOnly bool
}

// SetACL configures the Cluster's use of ACLs. Every API call carries the
// management token once it is known; with ACLs on and no token yet, the
// first health check bootstraps the ACL system and creates the tokens.
func (c *Cluster) SetACL(a ACLConfig) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.acl = a
	c.aclSynced = false
}

// Token returns the management token the Cluster uses ("" when none).
func (c *Cluster) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acl.Token
}

// tokenTransport adds the Cluster's current token to every request that
// carries none.
type tokenTransport struct {
	c    *Cluster
	base http.RoundTripper
}

func (t tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok := t.c.Token()
	if tok == "" || r.Header.Get("X-Consul-Token") != "" {
		return t.base.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("X-Consul-Token", tok)
	return t.base.RoundTrip(r)
}

// EnsureACL is ensureACL for callers outside the health checks (an apply
// that changed no file still repairs missing tokens).
func (c *Cluster) EnsureACL(ctx context.Context) error { return c.ensureACL(ctx) }

// ensureACL bootstraps the ACL system when it is on and has no token yet,
// then creates or updates the tokens, once per Cluster (again after a
// failure). With the agents not (yet) running with ACLs it does nothing.
func (c *Cluster) ensureACL(ctx context.Context) error {
	// One at a time: health checks run from several goroutines, and a
	// second bootstrap would be refused.
	c.aclMu.Lock()
	defer c.aclMu.Unlock()
	c.mu.Lock()
	a, synced := c.acl, c.aclSynced
	c.mu.Unlock()
	if !a.Enabled || synced || a.ReadOnly {
		return nil
	}
	if a.Token == "" {
		tok, err := c.bootstrap(ctx, a)
		if errors.Is(err, ErrACLDisabled) {
			return nil
		}
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.acl.Token = tok
		c.mu.Unlock()
	}
	res, err := c.SyncTokens(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.aclSynced = true
	c.mu.Unlock()
	if res.Replication {
		c.restartSecondaries(ctx)
	}
	c.kick(ctx, res.Nodes)
	return nil
}

// restartSecondaries restarts the leader of every secondary datacenter
// and waits (at most a minute) for the next one. The leader asks the
// primary to sign its datacenter's Connect CA with the replication token;
// asked before the token existed, it retries with a backoff that doubles
// up to minutes, and a new leader asks at once. One restart, one election:
// restarting every server of the datacenter at once raced two leaders'
// CA setups in one run (an intermediate whose key did not match). This
// runs when the replication token is made: at the first apply of a
// cluster with two datacenters, or when a datacenter is added, before any
// proxy of theirs starts.
func (c *Cluster) restartSecondaries(ctx context.Context) {
	leaderOf := func(ctx context.Context, servers []*inventory.Node) string {
		for _, n := range servers {
			leader := ""
			if err := c.query(ctx, n.Name, func(cl *api.Client, q *api.QueryOptions) error {
				var err error
				leader, err = cl.Status().LeaderWithQueryOptions(q)
				return err
			}); err == nil && leader != "" {
				return leader
			}
		}
		return ""
	}
	for _, dc := range c.topo.Cluster.Datacenters[1:] {
		servers := c.topo.Servers(dc.Name)
		old := leaderOf(ctx, servers)
		var target *inventory.Node
		for _, n := range servers {
			if host, _, err := net.SplitHostPort(old); err == nil && host == n.Address {
				target = n
			}
		}
		if target == nil {
			continue // no leader yet: the first one will ask with the token
		}
		if err := c.Restart(ctx, target.Name); err != nil {
			c.p.Report(target.Name, "acl", "restart for the replication token failed", err)
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		for wctx.Err() == nil {
			if l := leaderOf(wctx, servers); l != "" {
				break
			}
			time.Sleep(pollInterval)
		}
		cancel()
	}
}

// kickRounds bounds how often kick reloads an agent whose services are
// still missing from the catalog.
const kickRounds = 8

// kick makes the agents of nodes whose tokens were just made register at
// once. An agent that tried before its token existed marks the refused
// services in sync until its next full sync (a minute or more away), and
// remembers the token as unknown for the token TTL; a server may also
// still resolve tokens the old way for a while after the bootstrap. So:
// wait out the TTL, reload (SIGHUP re-registers every service), check the
// catalog, and again for the nodes whose services are still missing. Best
// effort: what is still missing is reported, not returned (the proxy wait
// that follows names it).
func (c *Cluster) kick(ctx context.Context, nodes []string) {
	var pending []*inventory.Node
	for _, name := range nodes {
		if n := c.topo.Node(name); n != nil {
			pending = append(pending, n)
		}
	}
	for round := 0; round < kickRounds && len(pending) > 0; round++ {
		t := time.NewTimer(consulcfg.ACLTokenTTL + time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		// A node whose reload fails (its agent is not running) is left
		// to its own start, with tokens that exist by then.
		failed := c.p.ForEach(ctx, pending, 0, func(ctx context.Context, n *inventory.Node) error {
			err := c.Reload(ctx, n.Name)
			if err != nil {
				c.p.Report(n.Name, "acl", "reload after its tokens were made failed (the agent registers them on its next sync)", err)
			}
			return err
		})
		time.Sleep(2 * time.Second)
		var still []*inventory.Node
		for _, n := range pending {
			if failed[n.Name] == nil && !c.registered(ctx, n) {
				still = append(still, n)
			}
		}
		pending = still
	}
	for _, n := range pending {
		c.p.Report(n.Name, "acl", "its services are not in the catalog yet after the reloads", nil)
	}
}

// registered reports whether every service n's agent runs is in the
// catalog (and the agent answers at all: one that does not is not
// waited for).
func (c *Cluster) registered(ctx context.Context, n *inventory.Node) bool {
	var local map[string]*api.AgentService
	if err := c.query(ctx, n.Name, func(cl *api.Client, q *api.QueryOptions) error {
		var err error
		local, err = cl.Agent().Services()
		return err
	}); err != nil {
		return true
	}
	var cat *api.CatalogNode
	if err := c.query(ctx, n.Name, func(cl *api.Client, q *api.QueryOptions) error {
		var err error
		cat, _, err = cl.Catalog().Node(n.Name, q)
		return err
	}); err != nil || cat == nil {
		return false
	}
	for id := range local {
		if _, ok := cat.Services[id]; !ok {
			return false
		}
	}
	return true
}

// primaryServers lists the primary datacenter's servers, where ACL writes
// are made.
func (c *Cluster) primaryServers() []*inventory.Node {
	dc := c.topo.Cluster.Datacenters[0].Name
	return c.topo.Servers(dc)
}

// bootstrap asks the primary servers, in turn, for the one management
// token. It makes one pass: the callers (health checks) poll, and a first
// apply asks before any agent runs.
func (c *Cluster) bootstrap(ctx context.Context, a ACLConfig) (string, error) {
	var errs []string
	for _, n := range c.primaryServers() {
		var tok *api.ACLToken
		err := c.query(ctx, n.Name, func(cl *api.Client, q *api.QueryOptions) error {
			leader, err := cl.Status().LeaderWithQueryOptions(q)
			if err != nil {
				return err
			}
			if leader == "" {
				return errors.New("no leader yet")
			}
			tok, _, err = cl.ACL().Bootstrap()
			return err
		})
		switch {
		case err == nil && tok != nil && tok.SecretID != "":
			if a.Save == nil {
				return "", errors.New("ACL bootstrap: nowhere to keep the management token")
			}
			if err := a.Save(tok.SecretID); err != nil {
				// The token exists only in this process now: say so
				// without printing it.
				return "", fmt.Errorf("ACL bootstrap succeeded but the management token (%s) could not be saved: %w; the cluster must be reset (Consul's acl bootstrap reset) before mtlsctl can manage it", fingerprint.Token(tok.SecretID), err)
			}
			c.p.Report(n.Name, "acl", "bootstrapped; management token "+fingerprint.Token(tok.SecretID)+" kept in the state directory", nil)
			return tok.SecretID, nil
		case err != nil && strings.Contains(err.Error(), "no longer allowed"):
			return "", fmt.Errorf("%w (asked %s) and this state directory has no management token: put the cluster's management token in the state directory's acl/management.token (0600), or reset the bootstrap (Consul's acl bootstrap reset procedure)", ErrACLBootstrapped, n.Name)
		case err != nil && strings.Contains(err.Error(), "ACL support disabled"):
			return "", ErrACLDisabled
		case err != nil:
			errs = append(errs, n.Name+": "+err.Error())
		}
	}
	return "", fmt.Errorf("ACL bootstrap: no primary server could do it yet: %s", strings.Join(errs, "; "))
}

// ACLSync says what SyncTokens did.
type ACLSync struct {
	Created int `json:"created"`
	Updated int `json:"updated"`
	Kept    int `json:"kept"`
	// Nodes have a token that was created or replaced.
	Nodes []string `json:"nodes,omitempty"`
	// Replication: the replication token was created or replaced.
	Replication bool `json:"replication,omitempty"`
}

func (r *ACLSync) touched(node string) {
	if !slices.Contains(r.Nodes, node) {
		r.Nodes = append(r.Nodes, node)
	}
}

// touchedSpec records the nodes that use s: its node, or for the
// replication token every server of a secondary datacenter.
func (c *Cluster) touchedSpec(r *ACLSync, s TokenSpec) {
	if !s.Replication {
		r.touched(s.Node)
		return
	}
	r.Replication = true
	for _, dc := range c.topo.Cluster.Datacenters[1:] {
		for _, n := range c.topo.Servers(dc.Name) {
			r.touched(n.Name)
		}
	}
}

// description is a token's description: "mtlsctl <cluster>: agent n1".
func (a ACLConfig) description(s TokenSpec) string {
	if s.Replication {
		return a.prefix() + "replication to the secondary datacenters"
	}
	if s.Node != "" && s.Service == "" {
		return a.prefix() + "agent " + s.Node
	}
	return a.prefix() + "service " + s.Service + " on " + s.Node
}

func (a ACLConfig) prefix() string { return "mtlsctl " + a.Cluster + ": " }

// ReplicationPolicy is the replication token's policy.
const ReplicationPolicy = "mtlsctl-replication"

const replicationRules = "acl = \"read\"\noperator = \"write\"\nservice_prefix \"\" {\n  policy = \"read\"\n  intentions = \"read\"\n}\n"

// agentPolicy is the name of a node's agent policy.
func agentPolicy(node string) string { return "mtlsctl-agent-" + node }

func agentRules(node string) string {
	return fmt.Sprintf("node %q {\n  policy = \"write\"\n}\nservice_prefix \"\" {\n  policy = \"read\"\n}\n", node)
}

// aclClient is the API client of the first primary server that accepts
// the management token: ACL writes are made there.
func (c *Cluster) aclClient(ctx context.Context) (*api.Client, error) {
	var errs []string
	for _, n := range c.primaryServers() {
		err := c.query(ctx, n.Name, func(cl *api.Client, q *api.QueryOptions) error {
			_, _, err := cl.ACL().TokenReadSelf(q)
			return err
		})
		if err == nil {
			return c.API(ctx, n.Name)
		}
		errs = append(errs, n.Name+": "+err.Error())
	}
	return nil, fmt.Errorf("no primary server accepts the management token: %s", strings.Join(errs, "; "))
}

// SyncTokens makes Consul hold every token of the ACLConfig with the
// rights it should have: a policy per agent, service identities for
// services, and the DNS policy on the anonymous token. It never deletes
// (PruneTokens does, once no node uses the old tokens).
func (c *Cluster) SyncTokens(ctx context.Context) (*ACLSync, error) {
	c.mu.Lock()
	a := c.acl
	c.mu.Unlock()
	res := &ACLSync{}
	if !a.Enabled {
		return res, nil
	}
	cl, err := c.aclClient(ctx)
	if err != nil {
		return nil, err
	}
	wo := (&api.WriteOptions{}).WithContext(ctx)
	qo := (&api.QueryOptions{}).WithContext(ctx)

	// Policies by name: 1.6 has no read-by-name endpoint.
	pols, _, err := cl.ACL().PolicyList(qo)
	if err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	byName := map[string]string{}
	for _, p := range pols {
		byName[p.Name] = p.ID
	}
	policy := func(name, desc, rules string) (string, error) {
		id, ok := byName[name]
		if !ok {
			p, _, err := cl.ACL().PolicyCreate(&api.ACLPolicy{Name: name, Description: desc, Rules: rules}, wo)
			if err != nil {
				return "", fmt.Errorf("create policy %s: %w", name, err)
			}
			byName[name] = p.ID
			return p.ID, nil
		}
		p, _, err := cl.ACL().PolicyRead(id, qo)
		if err != nil {
			return "", fmt.Errorf("read policy %s: %w", name, err)
		}
		if p.Rules != rules || p.Description != desc {
			p.Rules, p.Description = rules, desc
			if _, _, err := cl.ACL().PolicyUpdate(p, wo); err != nil {
				return "", fmt.Errorf("update policy %s: %w", name, err)
			}
		}
		return id, nil
	}

	dnsID, err := policy(DNSPolicy, a.prefix()+"the anonymous token: DNS lookups only", dnsRules)
	if err != nil {
		return nil, err
	}
	anon, _, err := cl.ACL().TokenRead(anonymousAccessor, qo)
	if err != nil {
		return nil, fmt.Errorf("read the anonymous token: %w", err)
	}
	if len(anon.Policies) != 1 || anon.Policies[0].ID != dnsID {
		anon.Policies = []*api.ACLTokenPolicyLink{{ID: dnsID}}
		if _, _, err := cl.ACL().TokenUpdate(anon, wo); err != nil {
			return nil, fmt.Errorf("give the anonymous token the DNS policy: %w", err)
		}
	}

	for _, s := range a.Tokens {
		want := &api.ACLToken{AccessorID: s.AccessorID, SecretID: s.SecretID, Description: a.description(s)}
		switch {
		case s.Replication:
			id, err := policy(ReplicationPolicy, a.prefix()+"the secondary datacenters' servers: Connect CA and intention replication", replicationRules)
			if err != nil {
				return res, err
			}
			want.Policies = []*api.ACLTokenPolicyLink{{ID: id}}
		case s.Service == "":
			id, err := policy(agentPolicy(s.Node), a.prefix()+"the agent of node "+s.Node, agentRules(s.Node))
			if err != nil {
				return res, err
			}
			want.Policies = []*api.ACLTokenPolicyLink{{ID: id}}
		default:
			want.ServiceIdentities = []*api.ACLServiceIdentity{{ServiceName: s.Service}}
		}
		have, _, err := cl.ACL().TokenRead(s.AccessorID, qo)
		if err != nil && !notFound(err) {
			return res, fmt.Errorf("read token %s: %w", want.Description, err)
		}
		if have == nil {
			if _, _, err := cl.ACL().TokenCreate(want, wo); err != nil {
				return res, fmt.Errorf("create token %s: %w", want.Description, err)
			}
			res.Created++
			c.touchedSpec(res, s)
			continue
		}
		if tokenSame(have, want) {
			res.Kept++
			continue
		}
		if have.SecretID != want.SecretID {
			// A secret cannot change: the state and Consul disagree (a
			// restored state directory). The state wins.
			if _, err := cl.ACL().TokenDelete(s.AccessorID, wo); err != nil {
				return res, fmt.Errorf("replace token %s: %w", want.Description, err)
			}
			if _, _, err := cl.ACL().TokenCreate(want, wo); err != nil {
				return res, fmt.Errorf("replace token %s: %w", want.Description, err)
			}
			res.Updated++
			c.touchedSpec(res, s)
			continue
		}
		if _, _, err := cl.ACL().TokenUpdate(want, wo); err != nil {
			return res, fmt.Errorf("update token %s: %w", want.Description, err)
		}
		res.Updated++
	}
	return res, nil
}

func tokenSame(have, want *api.ACLToken) bool {
	if have.Description != want.Description || have.SecretID != want.SecretID {
		return false
	}
	var hp, wp, hs, ws []string
	for _, p := range have.Policies {
		hp = append(hp, p.ID)
	}
	for _, p := range want.Policies {
		wp = append(wp, p.ID)
	}
	for _, s := range have.ServiceIdentities {
		hs = append(hs, s.ServiceName+"@"+strings.Join(s.Datacenters, ","))
	}
	for _, s := range want.ServiceIdentities {
		ws = append(ws, s.ServiceName+"@"+strings.Join(s.Datacenters, ","))
	}
	sort.Strings(hp)
	sort.Strings(wp)
	sort.Strings(hs)
	sort.Strings(ws)
	return strings.Join(hp, " ") == strings.Join(wp, " ") && strings.Join(hs, " ") == strings.Join(ws, " ")
}

// notFound reports a 403 "ACL not found" or a 404 from a read.
func notFound(err error) bool {
	s := err.Error()
	return strings.Contains(s, "ACL not found") || strings.Contains(s, "404") || strings.Contains(s, "not found")
}

// PruneTokens deletes mtlsctl's tokens (description "mtlsctl <cluster>:")
// that are not in the ACLConfig, and the agent policies of nodes that have
// no token any more: what `rotate tokens` replaced and what removed nodes
// and services had. It returns how many tokens it deleted.
func (c *Cluster) PruneTokens(ctx context.Context) (int, error) {
	c.mu.Lock()
	a := c.acl
	c.mu.Unlock()
	if !a.Enabled || a.Token == "" {
		return 0, nil
	}
	cl, err := c.aclClient(ctx)
	if err != nil {
		return 0, err
	}
	wo := (&api.WriteOptions{}).WithContext(ctx)
	qo := (&api.QueryOptions{}).WithContext(ctx)
	keep := map[string]bool{}
	nodes := map[string]bool{}
	replication := false
	for _, s := range a.Tokens {
		keep[s.AccessorID] = true
		switch {
		case s.Replication:
			replication = true
		case s.Service == "":
			nodes[agentPolicy(s.Node)] = true
		}
	}
	list, _, err := cl.ACL().TokenList(qo)
	if err != nil {
		return 0, fmt.Errorf("list tokens: %w", err)
	}
	n := 0
	for _, t := range list {
		if !strings.HasPrefix(t.Description, a.prefix()) || keep[t.AccessorID] || t.Description == a.prefix()+"management" {
			continue
		}
		if _, err := cl.ACL().TokenDelete(t.AccessorID, wo); err != nil && !notFound(err) {
			return n, fmt.Errorf("delete token %q: %w", t.Description, err)
		}
		n++
	}
	pols, _, err := cl.ACL().PolicyList(qo)
	if err != nil {
		return n, fmt.Errorf("list policies: %w", err)
	}
	for _, p := range pols {
		stale := strings.HasPrefix(p.Name, "mtlsctl-agent-") && !nodes[p.Name]
		stale = stale || (p.Name == ReplicationPolicy && !replication)
		if stale && strings.HasPrefix(p.Description, a.prefix()) {
			if _, err := cl.ACL().PolicyDelete(p.ID, wo); err != nil && !notFound(err) {
				return n, fmt.Errorf("delete policy %s: %w", p.Name, err)
			}
		}
	}
	return n, nil
}

// DeleteACL removes every token and policy mtlsctl made (uninstall) and
// gives the anonymous token back no policy. The management token stays:
// it is the only key left to the ACL system.
func (c *Cluster) DeleteACL(ctx context.Context) (int, error) {
	c.mu.Lock()
	c.acl.Tokens = nil
	a := c.acl
	c.mu.Unlock()
	n, err := c.PruneTokens(ctx)
	if err != nil {
		return n, err
	}
	if !a.Enabled || a.Token == "" {
		return n, nil
	}
	cl, err := c.aclClient(ctx)
	if err != nil {
		return n, err
	}
	wo := (&api.WriteOptions{}).WithContext(ctx)
	qo := (&api.QueryOptions{}).WithContext(ctx)
	pols, _, err := cl.ACL().PolicyList(qo)
	if err != nil {
		return n, fmt.Errorf("list policies: %w", err)
	}
	for _, p := range pols {
		if p.Name != DNSPolicy {
			continue
		}
		if anon, _, err := cl.ACL().TokenRead(anonymousAccessor, qo); err == nil && anon != nil {
			anon.Policies = nil
			if _, _, err := cl.ACL().TokenUpdate(anon, wo); err != nil {
				return n, fmt.Errorf("anonymous token: %w", err)
			}
		}
		if _, err := cl.ACL().PolicyDelete(p.ID, wo); err != nil && !notFound(err) {
			return n, fmt.Errorf("delete policy %s: %w", DNSPolicy, err)
		}
	}
	return n, nil
}

// RenewManagement makes a new management token, hands it to save, then
// deletes the old one; the Cluster uses the new one from then on.
func (c *Cluster) RenewManagement(ctx context.Context, secret string, save func(string) error) error {
	c.mu.Lock()
	a := c.acl
	c.mu.Unlock()
	cl, err := c.aclClient(ctx)
	if err != nil {
		return err
	}
	wo := (&api.WriteOptions{}).WithContext(ctx)
	qo := (&api.QueryOptions{}).WithContext(ctx)
	old, _, err := cl.ACL().TokenReadSelf(qo)
	if err != nil {
		return fmt.Errorf("read the management token: %w", err)
	}
	if _, _, err := cl.ACL().TokenCreate(&api.ACLToken{SecretID: secret, Description: a.prefix() + "management",
		Policies: []*api.ACLTokenPolicyLink{{ID: globalManagementPolicy}}}, wo); err != nil {
		return fmt.Errorf("create the new management token: %w", err)
	}
	if err := save(secret); err != nil {
		return fmt.Errorf("the new management token %s exists but could not be saved (the old one still works): %w", fingerprint.Token(secret), err)
	}
	c.mu.Lock()
	c.acl.Token = secret
	c.mu.Unlock()
	if _, err := cl.ACL().TokenDelete(old.AccessorID, wo); err != nil {
		return fmt.Errorf("delete the old management token %s: %w", fingerprint.Token(old.SecretID), err)
	}
	return nil
}

// ACLStatus is what status shows of the ACL system.
type ACLStatus struct {
	Enabled bool `json:"enabled"`
	// Management is the management token's fingerprint ("" when none).
	Management string `json:"management_token,omitempty"`
	// Valid: Consul accepts the management token.
	Valid bool `json:"management_valid"`
	// Expected is how many agent and service tokens there should be;
	// Present how many of them Consul holds; Missing names some that it
	// does not.
	Expected int      `json:"expected_tokens"`
	Present  int      `json:"present_tokens"`
	Missing  []string `json:"missing,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// ACLStatus checks the management token and that Consul holds every token.
func (c *Cluster) ACLStatus(ctx context.Context) *ACLStatus {
	c.mu.Lock()
	a := c.acl
	c.mu.Unlock()
	st := &ACLStatus{Enabled: a.Enabled, Expected: len(a.Tokens)}
	if !a.Enabled {
		return st
	}
	if a.Token == "" {
		st.Error = "no management token in the state directory: apply bootstraps the ACL system"
		return st
	}
	st.Management = fingerprint.Token(a.Token)
	cl, err := c.aclClient(ctx)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.Valid = true
	list, _, err := cl.ACL().TokenList((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		st.Error = "list tokens: " + err.Error()
		return st
	}
	have := map[string]bool{}
	for _, t := range list {
		have[t.AccessorID] = true
	}
	for _, s := range a.Tokens {
		if have[s.AccessorID] {
			st.Present++
		} else if len(st.Missing) < 10 {
			st.Missing = append(st.Missing, a.description(s))
		}
	}
	return st
}

// AgentsWithoutACL reports whether the primary servers' agents run with
// ACLs off: an agent that answers /v1/agent/self without a token and says
// so. One that refuses (403) runs with ACLs; none answering (a first
// apply, nothing runs yet) is not "without ACLs" either.
func (c *Cluster) AgentsWithoutACL(ctx context.Context) bool {
	for _, n := range c.primaryServers() {
		var self map[string]map[string]any
		err := c.query(ctx, n.Name, func(cl *api.Client, q *api.QueryOptions) error {
			var err error
			self, err = cl.Agent().Self()
			return err
		})
		if err != nil {
			continue
		}
		if on, ok := self["DebugConfig"]["ACLsEnabled"].(bool); ok {
			return !on
		}
	}
	return false
}
