package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute/consulapi"
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
