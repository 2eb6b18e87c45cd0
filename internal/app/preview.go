package app

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// renderPreview renders every node's bundle as apply would push it. When
// the state covers the cluster file, that is renderWithPorts and pending is
// nil. When it does not (a node added or moved, a port range changed, no
// state yet), it computes in memory what generate would do, renders from
// that, and returns it as pending: the state directory is left as it was,
// byte for byte. What generate would make new (a leaf, the CA, the gossip
// key, tokens) is a stand-in here; everything else is exact.
func renderPreview(c Common, t *inventory.Topology) ([]consulcfg.Bundle, *inventory.Assignment, *GenerateReport, error) {
	st, err := ca.Open(c.State, ca.OpenOptions{AllowMissing: true})
	if err != nil {
		return nil, nil, nil, err
	}
	prev, err := st.Ports()
	if err != nil {
		return nil, nil, nil, err
	}
	ports, err := inventory.AssignPorts(t, prev)
	if err != nil {
		return nil, nil, nil, err
	}
	toks, tokRes, err := wantTokens(st, t, ports)
	if err != nil {
		return nil, nil, nil, err
	}
	var tokens map[string]consulcfg.NodeTokens
	if toks != nil {
		tokens = renderTokens(t, toks)
	}
	creds, err := st.Credentials(t)
	current := err == nil && prev != nil && ports.Equal(prev) && (tokRes == nil || tokRes.Action == ca.Kept)
	switch {
	case current:
		bundles, err := renderCreds(t, ports, creds, tokens)
		return bundles, ports, nil, err
	case err != nil && !errors.Is(err, ca.ErrStale) && !errors.Is(err, ca.ErrNoCA) && !errors.Is(err, ca.ErrNoGossipKey):
		return nil, nil, nil, err
	}
	o := GenerateOptions{}.caOptions(t)
	o.Ports = ports
	rep, creds, err := st.Preview(t, o)
	if err != nil {
		return nil, nil, nil, err
	}
	rep.ACL = tokRes
	bundles, err := renderCreds(t, ports, creds, tokens)
	if err != nil {
		return nil, nil, nil, err
	}
	return bundles, ports, &GenerateReport{GenerateReport: rep, PortChanges: ports.Changes(prev)}, nil
}

// planDoc is plan's JSON document: the node plans and, when the state is
// behind the cluster file, what generate would do first.
type planDoc struct {
	*distribute.PlanResult
	Generate *GenerateReport `json:"generate,omitempty"`
}

// writePending prints what generate would do before the push (nothing when
// the state is current).
func writePending(w io.Writer, state string, p *GenerateReport) {
	if p == nil {
		return
	}
	fmt.Fprintf(w, "generate first (computed in memory; %s is unchanged until apply, after you confirm, issues it):\n", state)
	_ = writeGenerateReport(w, state, p, true)
	fmt.Fprintln(w, "new certificates, keys and tokens below are shown as they will change; their bytes are known only after apply")
	fmt.Fprintln(w)
}

// pendingSummary says in one phrase what generate would do.
func pendingSummary(p *GenerateReport) string {
	var parts []string
	if p.CA.Action == ca.Created {
		parts = append(parts, "no CA yet")
	}
	if p.Gossip.Action == ca.Created {
		parts = append(parts, "no gossip key yet")
	}
	issue := 0
	for _, n := range p.Nodes {
		if n.Action != ca.Kept {
			issue++
		}
	}
	if issue > 0 {
		parts = append(parts, fmt.Sprintf("%d certificate(s) to issue", issue))
	}
	if len(p.PortChanges) > 0 {
		parts = append(parts, fmt.Sprintf("%d port assignment(s) to change", len(p.PortChanges)))
	}
	if p.ACL != nil && p.ACL.Action != ca.Kept {
		parts = append(parts, "ACL tokens to make")
	}
	if len(parts) == 0 {
		return "the recorded state is out of date"
	}
	return strings.Join(parts, ", ")
}

// generate does, under apply's state lock, what the plan previewed, prints
// it, and renders the bundles again from the state.
func (r *remote) generate(c Common, d DistOptions) error {
	rep, err := generateLocked(r.st, r.t, GenerateOptions{}.caOptions(r.t))
	if err != nil {
		return err
	}
	if !c.JSON {
		c.printf("generate:\n")
		w := bufio.NewWriter(c.stdout())
		if err := writeGenerateReport(w, c.State, rep, false); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		c.printf("\n")
	}
	r.pending = nil
	if err := r.rebundle(c, d); err != nil {
		return err
	}
	return r.setupACL(false)
}

// samePlanShape checks that a plan made after generate changes the same
// files on the same nodes as the preview the operator confirmed: only the
// bytes of what generate made may differ.
func samePlanShape(preview, real *distribute.PlanResult) error {
	shape := func(p *distribute.PlanResult) map[string]string {
		out := map[string]string{}
		for _, np := range p.Nodes {
			if np.Err != nil {
				out[np.Node] = "error: " + np.Error
				continue
			}
			var fs []string
			for _, f := range np.Files {
				fs = append(fs, string(f.Action)+" "+f.Path)
			}
			sort.Strings(fs)
			out[np.Node] = strings.Join(fs, "\n")
		}
		return out
	}
	a, b := shape(preview), shape(real)
	var moved []string
	for node, s := range b {
		if a[node] != s {
			moved = append(moved, node)
		}
	}
	for node := range a {
		if _, ok := b[node]; !ok {
			moved = append(moved, node)
		}
	}
	if len(moved) > 0 {
		sort.Strings(moved)
		return fmt.Errorf("the files to change on %s differ from the plan you confirmed", strings.Join(moved, ", "))
	}
	return nil
}
