package app

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/mtlsctl/mtlsctl/ca"
)

// writeGenerateReport prints what generate did: the CA and gossip key, every
// node whose certificate was created or reissued (with why), and a count of
// the nodes left alone.
func writeGenerateReport(w io.Writer, state string, r *ca.GenerateReport) error {
	fmt.Fprintf(w, "CA          %-8s %s\n            %s, expires %s\n", r.CA.Action, r.CA.Fingerprint, r.CA.Subject, r.CA.NotAfter.Format("2006-01-02"))
	fmt.Fprintf(w, "gossip key  %-8s %s\n", r.Gossip.Action, r.Gossip.Fingerprint)
	if r.Ports != "" {
		fmt.Fprintf(w, "ports       %s\n", r.Ports)
	}
	if r.ACL != nil {
		fmt.Fprintf(w, "acl tokens  %-8s %d (an agent token per node, a token per service and proxy)\n", r.ACL.Action, r.ACL.Tokens)
	}
	counts := map[ca.Action]int{}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := false
	for _, n := range r.Nodes {
		counts[n.Action]++
		if n.Action == ca.Kept {
			continue
		}
		if !header {
			fmt.Fprintln(tw, "\nNODE\tCERTIFICATE\tWHY\tSERIAL\tEXPIRES")
			header = true
		}
		reason := n.Reason
		if reason == "" || reason == "no certificate" {
			reason = "new node"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Node, n.Action, reason, n.Serial, n.NotAfter.Format("2006-01-02"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d node certificates: %d created, %d reissued, %d kept\n",
		len(r.Nodes), counts[ca.Created], counts[ca.Reissued], counts[ca.Kept])
	for _, a := range r.Archived {
		fmt.Fprintf(w, "archived the certificate of removed node %s to %s (no longer in the cluster file; nothing was deleted)\n", a.Node, a.Path)
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if !r.Changed() {
		fmt.Fprintln(w, "nothing to do: the state already matches the cluster file")
	}
	return nil
}
