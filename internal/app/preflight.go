package app

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// PreflightOptions are the options of `preflight`.
type PreflightOptions struct {
	// ApigeeVersion picks the OS support table ("" = the newest known).
	ApigeeVersion string
}

// ErrPreflight is a preflight check that failed on a node.
var ErrPreflight = fmt.Errorf("%w: a preflight check failed", ErrReported)

// Preflight checks every selected node over SSH, in parallel, before a
// bootstrap: OS, packages, the consul binary, firewalld, free ports, clock
// skew, reachability between nodes, disk. It prints a node x check table
// (or JSON) and fails when any check fails. It needs no state directory:
// without one, the ports are those `generate` would record.
func Preflight(ctx context.Context, c Common, d DistOptions, po PreflightOptions) error {
	d = c.sandboxDist(d)
	t, err := inventory.Load(c.Inventory)
	if err != nil {
		return err
	}
	names, err := parseNodes(t, d.Nodes)
	if err != nil {
		return err
	}
	st, prev, err := recordedPorts(c)
	if err != nil {
		return err
	}
	ports, err := inventory.AssignPorts(t, prev)
	if err != nil {
		return err
	}
	o := c.distOptions(d, st)
	sess, err := distribute.Open(t, o)
	if err != nil {
		return err
	}
	defer sess.Close()
	res, err := sess.Preflight(ctx, nodesNamed(t, names), distribute.PreflightOptions{
		ApigeeVersion: po.ApigeeVersion, Ports: ports, Now: c.Now})
	if err != nil {
		return err
	}
	if c.JSON {
		if err := c.writeJSON("preflight", res); err != nil {
			return err
		}
	} else {
		writePreflight(c.stdout(), res)
	}
	if res.Failed() {
		return ErrPreflight
	}
	return nil
}

// preflightCheap runs the checks apply needs before it starts (free
// ports, clock skew) on the selected nodes and refuses on a fail.
func (r *remote) preflightCheap(ctx context.Context, c Common) error {
	var names []string
	for _, b := range r.bundles {
		names = append(names, b.Node)
	}
	res, err := r.sess.Preflight(ctx, nodesNamed(r.t, names), distribute.PreflightOptions{Cheap: true, Ports: r.ports, Now: c.Now})
	if err != nil {
		return err
	}
	// A node that cannot be reached is left to the plan, which names the
	// connection error once and refuses to apply.
	failed := &distribute.PreflightResult{}
	for _, ch := range res.Checks {
		if ch.Verdict == distribute.Fail && !ch.Unreachable {
			failed.Checks = append(failed.Checks, ch)
		}
	}
	if len(failed.Checks) == 0 {
		return nil
	}
	writePreflight(c.stderr(), failed)
	return fmt.Errorf("%w: apply changed nothing; fix the checks above, or pass --skip-preflight", ErrPreflight)
}

// nodesNamed returns the topology's nodes with the given names, in file
// order (every node when names is nil).
func nodesNamed(t *inventory.Topology, names []string) []*inventory.Node {
	if names == nil {
		return t.Nodes
	}
	var out []*inventory.Node
	for _, n := range t.Nodes {
		for _, m := range names {
			if n.Name == m {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

func writePreflight(w io.Writer, r *distribute.PreflightResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCHECK\tRESULT\tREASON\tFIX")
	fails, warns := 0, 0
	for _, ch := range r.Checks {
		switch ch.Verdict {
		case distribute.Fail:
			fails++
		case distribute.Warn:
			warns++
		}
		fix := ch.Fix
		if fix == "" {
			fix = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ch.Node, ch.Check, strings.ToUpper(string(ch.Verdict)), oneLine(ch.Reason), oneLine(fix))
	}
	tw.Flush()
	if r.ApigeeVersion != "" {
		fmt.Fprintf(w, "\n%d check(s): %d failed, %d warned (OS table of Apigee %s)\n", len(r.Checks), fails, warns, r.ApigeeVersion)
	}
}

// oneLine keeps a table cell on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
