package app

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mtlsctl/mtlsctl/distribute/consulapi"
)

// VerifyTimeout bounds how long VerifyCluster waits for the cluster to be
// healthy after an apply.
const VerifyTimeout = 2 * time.Minute

// verifyCluster is what apply runs after a successful push: it waits (at
// most VerifyTimeout) until every datacenter has a leader, every server is
// a Raft voter, every agent is an alive member (LAN, and WAN for servers)
// and every agent serves the certificate mtlsctl issued, then prints the
// leader, members and keyring. With -o json the summary goes to stderr, so
// stdout keeps the apply's JSON.
func verifyCluster(ctx context.Context, c Common, cl *consulapi.Cluster) (*consulapi.Health, error) {
	c.printf("\nwaiting for the Consul cluster (leader, voters, members, certificates; at most %s)\n", VerifyTimeout)
	wctx, cancel := context.WithTimeout(ctx, VerifyTimeout)
	defer cancel()
	start := time.Now()
	h, err := cl.WaitHealthy(wctx, consulapi.Want{Certs: true})
	if err == nil {
		// One full pass for the report: WaitHealthy skips the keyring (a
		// Serf query, seconds on big clusters) unless it waits for a key.
		if full, herr := cl.Health(wctx); herr == nil {
			h = full
		}
	}
	if h != nil {
		w := c.stdout()
		if c.JSON {
			w = c.stderr()
		}
		writeHealth(w, h, nil)
	}
	if err != nil {
		return h, fmt.Errorf("the files are in place but the cluster is not healthy: %w", err)
	}
	c.printf("cluster healthy after %s\n", time.Since(start).Round(100*time.Millisecond))
	return h, nil
}

// liveStatus reads the live cluster for `status`: per datacenter the
// leader, Raft peers and members, the keyring, and per node whether its
// agent serves the certificate mtlsctl issued. In text mode it prints the
// report; the caller adds the returned Health to its JSON. The error says
// what is wrong (ErrNotHealthy) when the cluster is not healthy. down maps
// the nodes the caller already reported unreachable to their error: the
// tables mark them instead of repeating it.
func liveStatus(ctx context.Context, c Common, r *remote, down map[string]string) (*consulapi.Health, error) {
	h, err := r.live().Health(ctx)
	if h != nil && !c.JSON {
		fmt.Fprintln(c.stdout())
		writeHealth(c.stdout(), h, down)
	}
	if err != nil {
		return h, err
	}
	if p := h.Problems(r.t, consulapi.Want{Certs: len(r.bundles) > 0}); len(p) > 0 {
		return h, fmt.Errorf("%w: %s", consulapi.ErrNotHealthy, strings.Join(p, "; "))
	}
	return h, nil
}

// writeHealth prints a Health report: datacenters, keyring, nodes. The
// nodes in down (node -> its error, already printed above) are marked
// unreachable without their error.
func writeHealth(w io.Writer, h *consulapi.Health, down map[string]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATACENTER\tLEADER\tVOTERS\tMEMBERS\tWAN\tASKED\tERROR")
	for _, d := range h.Datacenters {
		alive, voters, _ := d.Quorum()
		fmt.Fprintf(tw, "%s\t%s\t%d/%d alive\t%s\t%s\t%s\t%s\n", d.Name, orNone(d.Leader), alive, voters,
			countStatus(d.Members), countStatus(d.WAN), d.Via, elideDown(d.Error, down))
	}
	tw.Flush()
	if len(h.Keyring) > 0 || h.KeyringError != "" {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEYRING POOL\tKEY\tHELD BY\tPRIMARY ON")
		for _, p := range h.Keyring {
			pool := p.Datacenter + " LAN"
			if p.WAN {
				pool = "WAN"
			}
			for _, k := range p.Keys {
				prim := "-"
				if k.PrimaryNodes > 0 {
					prim = fmt.Sprintf("%d/%d", k.PrimaryNodes, p.NumNodes)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\n", pool, k.Fingerprint, k.Nodes, p.NumNodes, prim)
			}
		}
		tw.Flush()
		if h.KeyringError != "" {
			fmt.Fprintf(w, "keyring: %s\n", h.KeyringError)
		}
	}
	if a := h.ACL; a != nil && a.Enabled {
		switch {
		case a.Error != "":
			fmt.Fprintf(w, "\nacl: %s\n", a.Error)
		default:
			fmt.Fprintf(w, "\nacl: on (default deny); management token %s accepted; %d/%d agent and service tokens in Consul\n", a.Management, a.Present, a.Expected)
			if len(a.Missing) > 0 {
				fmt.Fprintf(w, "acl: missing: %s\n", strings.Join(a.Missing, ", "))
			}
		}
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tDC\tROLE\tMEMBER\tCERT SERVED")
	for _, n := range h.Nodes {
		role := "client"
		if n.Server {
			role = "server"
			if d := h.DC(n.Datacenter); d != nil && d.Leader == n.Node {
				role = "server (leader)"
			}
		}
		cert := "not checked"
		if _, ok := down[n.Node]; ok {
			cert = unreachableSeeAbove
		} else if n.Cert != nil {
			switch {
			case n.Cert.Match:
				cert = "issued " + short(n.Cert.Served)
			case n.Cert.Served != "":
				cert = fmt.Sprintf("OTHER %s (issued %s)", short(n.Cert.Served), short(n.Cert.Expected))
			default:
				cert = "unknown: " + n.Cert.Error
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Node, n.Datacenter, role, orNone(n.Member), cert)
	}
	tw.Flush()
}

// countStatus summarises a member list: "5 alive" or "4 alive, 1 failed".
func countStatus(ms []consulapi.Member) string {
	if len(ms) == 0 {
		return "-"
	}
	counts := map[string]int{}
	for _, m := range ms {
		counts[m.Status]++
	}
	var parts []string
	for _, s := range []string{consulapi.MemberAlive, consulapi.MemberFailed, consulapi.MemberLeaving, consulapi.MemberLeft, consulapi.MemberNone} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	return strings.Join(parts, ", ")
}

// VerifyCluster waits until the cluster is healthy and every agent serves
// the certificate mtlsctl issued (what apply does after a push), on
// connections of its own.
func VerifyCluster(ctx context.Context, c Common, d DistOptions) (*consulapi.Health, error) {
	r, err := openRemote(c, d)
	if err != nil {
		return nil, err
	}
	defer r.close()
	return verifyCluster(ctx, c, r.live())
}

// LiveStatus reads the live cluster as `status` does, on connections of
// its own.
func LiveStatus(ctx context.Context, c Common, d DistOptions) (*consulapi.Health, error) {
	r, err := openRemote(c, d)
	if err != nil {
		return nil, err
	}
	defer r.close()
	return liveStatus(ctx, c, r, nil)
}

// unreachableSeeAbove stands for the error of a node already reported.
const unreachableSeeAbove = "unreachable (see above)"

// elideDown replaces, in a message that quotes the errors of several
// nodes, the error of each node in down with unreachableSeeAbove.
func elideDown(msg string, down map[string]string) string {
	for _, e := range down {
		if e != "" {
			msg = strings.ReplaceAll(msg, e, unreachableSeeAbove)
		}
	}
	return msg
}
