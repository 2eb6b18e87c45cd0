package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute/consulapi"
	"github.com/mtlsctl/mtlsctl/internal/fingerprint"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// aclConfig is what the live cluster handle needs of the ACL system: the
// management token (when the state has one), where to keep it after the
// bootstrap, and every agent and service token from the state.
func (r *remote) aclConfig(readOnly bool) (consulapi.ACLConfig, error) {
	a := consulapi.ACLConfig{Enabled: r.t.Cluster.ACL.Enabled, Cluster: r.t.Cluster.Name, ReadOnly: readOnly}
	if !a.Enabled {
		return a, nil
	}
	tok, err := r.st.ManagementToken()
	switch {
	case errors.Is(err, ca.ErrNoManagementToken):
	case err != nil:
		return a, err
	default:
		a.Token = tok
	}
	a.Save = r.st.SetManagementToken
	if r.pending != nil {
		// A preview (plan before generate): the state's tokens do not
		// cover the cluster file yet, and a plan writes none.
		return a, nil
	}
	specs, err := tokenSpecs(r.st, r.t, r.ports)
	if err != nil {
		return a, err
	}
	a.Tokens = specs
	return a, nil
}

// setupACL configures the session's live cluster handle.
func (r *remote) setupACL(readOnly bool) error {
	a, err := r.aclConfig(readOnly)
	if err != nil {
		return err
	}
	r.sess.Live().SetACL(a)
	return nil
}

// tokenSpecs lists every token the state holds with what it is for: an
// agent token per node, a token per service with that service's name.
func tokenSpecs(st *ca.State, t *inventory.Topology, ports *inventory.Assignment) ([]consulapi.TokenSpec, error) {
	toks, err := st.ACLTokens()
	if err != nil {
		return nil, err
	}
	refs, err := consulcfg.NodeServices(t, ports)
	if err != nil {
		return nil, err
	}
	var out []consulapi.TokenSpec
	if toks.Replication != nil {
		out = append(out, consulapi.TokenSpec{AccessorID: toks.Replication.AccessorID, SecretID: toks.Replication.SecretID, Replication: true})
	}
	for _, n := range t.Nodes {
		nt := toks.Nodes[n.Name]
		if nt == nil {
			return nil, fmt.Errorf("%s: node %s has no ACL tokens: run `mtlsctl generate`", st.Dir(), n.Name)
		}
		out = append(out, consulapi.TokenSpec{AccessorID: nt.Agent.AccessorID, SecretID: nt.Agent.SecretID, Node: n.Name})
		for _, ref := range refs[n.Name] {
			tok, ok := nt.Services[ref.ID]
			if !ok {
				return nil, fmt.Errorf("%s: service %s on node %s has no ACL token: run `mtlsctl generate`", st.Dir(), ref.ID, n.Name)
			}
			out = append(out, consulapi.TokenSpec{AccessorID: tok.AccessorID, SecretID: tok.SecretID, Node: n.Name, Service: ref.Name})
		}
	}
	return out, nil
}

// pruneTokens deletes from Consul the tokens mtlsctl no longer uses (those
// `rotate tokens` replaced, those of removed nodes and services) once
// every node has been pushed, and forgets the retired ones.
func (r *remote) pruneTokens(ctx context.Context, c Common) error {
	if !r.t.Cluster.ACL.Enabled || r.skipLive || len(r.bundles) != len(r.all) {
		return nil
	}
	n, err := r.sess.Live().PruneTokens(ctx)
	if err != nil {
		return fmt.Errorf("ACL: deleting unused tokens: %w", err)
	}
	toks, err := r.st.ACLTokens()
	if err != nil {
		return err
	}
	if len(toks.Retired) > 0 {
		toks.Retired = nil
		if err := r.st.SetACLTokens(toks); err != nil {
			return err
		}
	}
	if n > 0 {
		fmt.Fprintf(c.logw(), "acl: deleted %d token(s) no node uses any more\n", n)
	}
	return nil
}

// TokensResult is what `rotate tokens` did.
type TokensResult struct {
	// Replaced is how many agent and service tokens were replaced (and
	// then deleted from Consul).
	Replaced int `json:"replaced"`
	// Management is the new management token's fingerprint.
	Management string        `json:"management_token"`
	Deleted    int           `json:"deleted"`
	Duration   time.Duration `json:"duration_ns"`
}

// RotateTokens replaces every agent and service (proxy) token and the
// management token without a moment in which a node holds a token Consul
// does not know: the new tokens are made in Consul first, pushed (agents
// reload; each proxy restarts on its new token, one proxy of a class at a
// time), verified, and only then are the old ones deleted. The management
// token is replaced last: a new one is made and saved before the old one is
// deleted. Re-running after a failure replaces them again and deletes
// every token no node uses.
func RotateTokens(ctx context.Context, c Common, d DistOptions, r RotateOptions) error {
	d = c.sandboxDist(d)
	if len(d.Nodes) > 0 {
		return Usagef("rotate tokens changes every node: --nodes is not allowed")
	}
	t, err := inventory.Load(c.Inventory)
	if err != nil {
		return err
	}
	if !t.Cluster.ACL.Enabled {
		return fmt.Errorf("%s: ACLs are off (acl: {enabled: false}): there are no tokens to rotate", t.Cluster.Source)
	}
	if d.SkipLive && d.sandbox == "" {
		return Usagef("rotate tokens needs the live cluster: --skip-live is not allowed")
	}
	x, err := startRotation(ctx, c, d, r, "rotate tokens", "Replace every agent, proxy and management token (agents reload, proxies restart one at a time)?")
	if err != nil {
		return err
	}
	defer x.close()
	if d.sandbox != "" {
		return x.sandboxTokens(ctx)
	}
	start := time.Now()
	if _, err := x.st.ManagementToken(); err != nil {
		return fmt.Errorf("rotate tokens: %w: run `mtlsctl apply` first (it bootstraps the ACL system)", err)
	}
	toks, err := x.st.ACLTokens()
	if err != nil {
		return err
	}
	res := &TokensResult{Replaced: toks.Count()}
	if err := toks.Renew(nil); err != nil {
		return err
	}
	if err := x.st.SetACLTokens(toks); err != nil {
		return err
	}
	if err := x.rem.setupACL(false); err != nil {
		return err
	}
	sync, err := x.cl.SyncTokens(ctx)
	if err != nil {
		return fmt.Errorf("rotate tokens: making the new tokens in Consul: %w; nothing was pushed, re-run to retry", err)
	}
	fmt.Fprintf(c.logw(), "tokens: %d new token(s) made in Consul\n", sync.Created+sync.Updated)
	bundles, err := x.push(ctx, "tokens")
	if err != nil {
		return fmt.Errorf("rotate tokens: the new tokens are in Consul and the state but not on every node: %w; re-run `mtlsctl apply` to finish (the old tokens keep working until it does)", err)
	}
	if _, err := x.verify(ctx, "tokens", bundles); err != nil {
		return fmt.Errorf("rotate tokens: pushed, but not verified: %w", err)
	}
	if x.t.Cluster.Mesh.Enabled {
		if err := x.rem.waitProxies(ctx, c); err != nil {
			return fmt.Errorf("rotate tokens: %w", err)
		}
	}
	mt, err := ca.NewACLToken(nil)
	if err != nil {
		return err
	}
	if err := x.cl.RenewManagement(ctx, mt.SecretID, x.st.SetManagementToken); err != nil {
		return fmt.Errorf("rotate tokens: the agent and proxy tokens were replaced, the management token was not: %w", err)
	}
	res.Management = fingerprint.Token(mt.SecretID)
	fmt.Fprintf(c.logw(), "tokens: new management token %s kept in %s\n", res.Management, x.st.ManagementTokenFile())
	if res.Deleted, err = x.cl.PruneTokens(ctx); err != nil {
		return fmt.Errorf("rotate tokens: the old tokens could not all be deleted (re-run `mtlsctl apply` to retry): %w", err)
	}
	toks.Retired = nil
	if err := x.st.SetACLTokens(toks); err != nil {
		return err
	}
	res.Duration = time.Since(start)
	if c.JSON {
		return c.writeJSON("rotate-tokens", res)
	}
	fmt.Fprintf(c.stdout(), "\n%d agent and service token(s) and the management token replaced, %d old token(s) deleted, in %s\n",
		res.Replaced, res.Deleted, res.Duration.Round(time.Millisecond))
	return nil
}

// refuseACLTurnOn refuses an apply that would turn ACLs on in a cluster
// whose agents run without them (the state has no management token and
// the primary servers answer without ACLs). Consul 1.6 cannot do that
// without an outage: a server restarted with ACLs refuses every request
// ("ACL not found") while the leader still runs without them, so its
// proxies' connections fail until the last server is restarted and the
// system is bootstrapped. A fresh cluster gets them from its first apply.
func (r *remote) refuseACLTurnOn(ctx context.Context) error {
	if !r.t.Cluster.ACL.Enabled || r.skipLive {
		return nil
	}
	if _, err := r.st.ManagementToken(); !errors.Is(err, ca.ErrNoManagementToken) {
		return nil
	}
	if !r.sess.Live().AgentsWithoutACL(ctx) {
		return nil
	}
	return fmt.Errorf("%s turns Consul's ACLs on (the default), but the agents run without them: in a running cluster that cannot be done without an outage (a server restarted with ACLs refuses every request while the leader runs without them, and the mesh with it); nothing was changed. Keep them off with `acl: {enabled: false}` in the cluster file: mtlsctl does not yet turn ACLs on in a running cluster", r.t.Cluster.Source)
}

// sandboxTokens is `rotate tokens` on a sandbox: there is no Consul to make
// the new tokens in, delete the old ones from or bootstrap a management
// token with, so the agent and service tokens are replaced in the state and
// pushed to the nodes, and nothing else.
func (x *rotation) sandboxTokens(ctx context.Context) error {
	c := x.c
	c.sandboxSkips("every step in Consul (making the new tokens, the health and proxy checks, replacing the management token, deleting the old tokens)",
		"replaces every agent and service token in the state and pushes them to the nodes")
	start := time.Now()
	toks, err := x.st.ACLTokens()
	if err != nil {
		return err
	}
	res := &TokensResult{Replaced: toks.Count()}
	if err := toks.Renew(nil); err != nil {
		return err
	}
	// No Consul holds the old tokens: nothing is left to delete later.
	toks.Retired = nil
	if err := x.st.SetACLTokens(toks); err != nil {
		return err
	}
	if _, err := x.push(ctx, "tokens"); err != nil {
		return fmt.Errorf("rotate tokens: the new tokens are in the state but not on every node: %w; re-run `mtlsctl apply` to finish", err)
	}
	res.Duration = time.Since(start)
	if c.JSON {
		return c.writeJSON("rotate-tokens", res)
	}
	fmt.Fprintf(c.stdout(), "\n%d agent and service token(s) replaced in the state and on the nodes, in %s; Consul was not told: the sandbox runs no agent\n",
		res.Replaced, res.Duration.Round(time.Millisecond))
	return nil
}
