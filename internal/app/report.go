package app

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/mtlsctl/mtlsctl/ca"
)

// writeGenerateReport prints what generate did: the CA and gossip key, every
// node whose certificate was created or reissued (with why), the proxy
// ports it assigned or moved, and a count of the nodes left alone. With
// preview it is what generate would do (plan and apply before the prompt):
// what it would make new is known only once it is made, and says so.
func writeGenerateReport(w io.Writer, state string, r *GenerateReport, preview bool) error {
	fp := func(action ca.Action, fp string) string {
		if preview && action != ca.Kept {
			return "(known after apply)"
		}
		return fp
	}
	caAction, gossipAction := string(r.CA.Action), string(r.Gossip.Action)
	if preview {
		caAction, gossipAction = willDo(r.CA.Action), willDo(r.Gossip.Action)
	}
	fmt.Fprintf(w, "CA          %-8s %s\n            %s, expires %s\n", caAction, fp(r.CA.Action, r.CA.Fingerprint), r.CA.Subject, r.CA.NotAfter.Format("2006-01-02"))
	fmt.Fprintf(w, "gossip key  %-8s %s\n", gossipAction, fp(r.Gossip.Action, r.Gossip.Fingerprint))
	if r.Ports != "" {
		a := string(r.Ports)
		if preview {
			a = willDo(r.Ports)
		}
		fmt.Fprintf(w, "ports       %s\n", a)
	}
	if r.ACL != nil {
		a := string(r.ACL.Action)
		if preview {
			a = willDo(r.ACL.Action)
		}
		fmt.Fprintf(w, "acl tokens  %-8s %d (an agent token per node, a token per service and proxy)\n", a, r.ACL.Tokens)
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
		action, serial := string(n.Action), n.Serial
		if preview {
			action, serial = willDo(n.Action), "(known after apply)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Node, action, reason, serial, n.NotAfter.Format("2006-01-02"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.PortChanges) > 0 {
		verb := "assigned or moved"
		if preview {
			verb = "to assign or move"
		}
		fmt.Fprintf(w, "\nproxy ports %s:\n", verb)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  NODE\tCOMPONENT\tFROM\tTO")
		for _, pc := range r.PortChanges {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", pc.Node, pc.Component, portList(pc.Old), portList(pc.New))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	created, reissued := "created", "reissued"
	if preview {
		created, reissued = "to create", "to reissue"
	}
	fmt.Fprintf(w, "\n%d node certificates: %d %s, %d %s, %d kept\n",
		len(r.Nodes), counts[ca.Created], created, counts[ca.Reissued], reissued, counts[ca.Kept])
	for _, name := range r.Removed {
		if preview {
			fmt.Fprintf(w, "node %s is no longer in the cluster file: apply archives its certificate in %s\n", name, state)
		}
	}
	for _, a := range r.Archived {
		fmt.Fprintf(w, "archived the certificate of removed node %s to %s (no longer in the cluster file; nothing was deleted)\n", a.Node, a.Path)
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	if !r.Changed() && !preview {
		fmt.Fprintln(w, "nothing to do: the state already matches the cluster file")
	}
	return nil
}

// willDo is a generate action said ahead of time.
func willDo(a ca.Action) string {
	switch a {
	case ca.Created:
		return "create"
	case ca.Reissued:
		return "reissue"
	case ca.Updated:
		return "update"
	}
	return string(a)
}

// portList prints ports as "10001,10002", or "(none)".
func portList(ps []int) string {
	if len(ps) == 0 {
		return "(none)"
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = strconv.Itoa(p)
	}
	return strings.Join(out, ",")
}
