package app

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// ExpiryState is what `certs check-expiration` concludes about one
// certificate.
type ExpiryState string

// Expiry states. ok and warning are answers about a certificate that was
// read; the others are failures (exit 1).
const (
	ExpiryOK          ExpiryState = "ok"
	ExpiryWarn        ExpiryState = "warning"     // expires within --warn-days
	ExpiryExpired     ExpiryState = "expired"     // past its not-after
	ExpiryUnreachable ExpiryState = "unreachable" // --remote: the node could not be reached
	ExpiryUnreadable  ExpiryState = "unreadable"  // --remote: reached, but its certificate could not be read
	ExpiryMissing     ExpiryState = "missing"     // no certificate (in the state, or on the node)
)

func (s ExpiryState) failed() bool {
	return s != ExpiryOK && s != ExpiryWarn
}

// ExpiryRow is one certificate in the expiry report. Facts that are not
// known (a node that could not be reached has no expiry) are left out of
// the JSON, never given as zero values.
type ExpiryRow struct {
	// Name is "ca", "trusted-ca <file>" or a node name.
	Name string `json:"name"`
	// Kind is "ca", "trusted-ca" (a CA still trusted during a rollover) or "node".
	Kind string `json:"kind"`
	// Server is set for nodes: whether the node runs a Consul server.
	Server *bool `json:"server,omitempty"`
	// Reachable is set under --remote: whether the node answered.
	Reachable   *bool       `json:"reachable,omitempty"`
	State       ExpiryState `json:"state"`
	Subject     string      `json:"subject,omitempty"`
	Issuer      string      `json:"issuer,omitempty"`
	Serial      string      `json:"serial,omitempty"`
	Fingerprint string      `json:"fingerprint,omitempty"`
	NotBefore   *time.Time  `json:"not_before,omitempty"`
	NotAfter    *time.Time  `json:"not_after,omitempty"`
	// DaysLeft is whole days until NotAfter, negative once expired.
	DaysLeft *int  `json:"days_left,omitempty"`
	Expired  *bool `json:"expired,omitempty"`
	IsCA     bool  `json:"is_ca,omitempty"`
	// Fix is the command that fixes a warning, an expired or a missing
	// certificate.
	Fix string `json:"fix,omitempty"`
	// Error says why the certificate could not be read.
	Error string `json:"error,omitempty"`
}

// ExpiryWarning is returned by CheckExpiration when no certificate failed
// (none expired, every one read) but some expire within --warn-days: the
// command line exits 4 for it, not 1. The report above names each one and
// the command that renews it.
type ExpiryWarning struct {
	Certs    int // how many expire within WarnDays
	WarnDays int
}

func (w ExpiryWarning) Error() string {
	return fmt.Sprintf("warning: %d certificate(s) expire within %d days (see the fixes above)", w.Certs, w.WarnDays)
}

// Unwrap says the warning is already reported in full.
func (w ExpiryWarning) Unwrap() error { return ErrReported }

// judge sets r's state, days left and fix from its not-after at now.
func (r *ExpiryRow) judge(notAfter time.Time, now time.Time, warnDays int) {
	na := notAfter.UTC()
	days := ca.DaysLeft(notAfter, now)
	expired := !now.Before(notAfter)
	r.NotAfter, r.DaysLeft, r.Expired = &na, &days, &expired
	switch {
	case expired:
		r.State = ExpiryExpired
	case days <= warnDays:
		r.State = ExpiryWarn
	default:
		r.State = ExpiryOK
		return
	}
	switch r.Kind {
	case "ca":
		r.Fix = "mtlsctl rotate ca"
	case "trusted-ca":
		// The old CA of an unfinished rollover: re-running it finishes it,
		// which drops that CA.
		r.Fix = "mtlsctl rotate ca"
	default:
		if expired {
			// rotate certs needs every current leaf valid; generate
			// reissues an expired one.
			r.Fix = "mtlsctl generate, then mtlsctl apply"
		} else {
			r.Fix = "mtlsctl rotate certs --nodes " + r.Name
		}
	}
}

// stateExpiry is the expiry of the certificates the cluster file uses, as
// the state directory holds them: the CA, the CAs still trusted from a
// rollover, and the leaf of every selected node of t (nodes: nil = all).
func stateExpiry(st *ca.State, t *inventory.Topology, nodes []string, now time.Time, warnDays int) ([]ExpiryRow, error) {
	certs, err := st.Expiry(t, now)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, n := range nodes {
		want[n] = true
	}
	byNode := map[string]ca.CertStatus{}
	var rows []ExpiryRow
	for _, cs := range certs {
		switch {
		case cs.Name == "ca":
			rows = append(rows, certRow(cs, "ca", nil, now, warnDays))
		case strings.HasPrefix(cs.Name, "trusted-ca "):
			rows = append(rows, certRow(cs, "trusted-ca", nil, now, warnDays))
		default:
			byNode[cs.Name] = cs
		}
	}
	for _, n := range t.Nodes {
		if len(want) > 0 && !want[n.Name] {
			continue
		}
		server := n.IsServer()
		cs, ok := byNode[n.Name]
		if !ok {
			rows = append(rows, ExpiryRow{Name: n.Name, Kind: "node", Server: &server, State: ExpiryMissing,
				Error: "no certificate in the state directory", Fix: "mtlsctl generate"})
			continue
		}
		rows = append(rows, certRow(cs, "node", &server, now, warnDays))
	}
	return rows, nil
}

func certRow(cs ca.CertStatus, kind string, server *bool, now time.Time, warnDays int) ExpiryRow {
	nb := cs.NotBefore.UTC()
	r := ExpiryRow{Name: cs.Name, Kind: kind, Server: server, Subject: cs.Subject, Issuer: cs.Issuer,
		Serial: cs.Serial, Fingerprint: cs.Fingerprint, NotBefore: &nb, IsCA: cs.IsCA}
	r.judge(cs.NotAfter, now, warnDays)
	return r
}

// remoteExpiry is the expiry of the certificate each node holds, as
// `status` read it. A node that could not be reached, or whose certificate
// could not be read, gets a row saying so, with its error, and no expiry.
func remoteExpiry(t *inventory.Topology, res *distribute.StatusResult, now time.Time, warnDays int) []ExpiryRow {
	var rows []ExpiryRow
	for _, n := range res.Nodes {
		r := ExpiryRow{Name: n.Node, Kind: "node"}
		if tn := t.Node(n.Node); tn != nil {
			server := tn.IsServer()
			r.Server = &server
		}
		reachable := n.Reachable
		r.Reachable = &reachable
		switch {
		case !n.Reachable:
			r.State, r.Error = ExpiryUnreachable, orNone(n.Error)
		case n.Err != nil:
			r.State, r.Error = ExpiryUnreadable, n.Error
		case n.CertNotAfter.IsZero():
			r.State, r.Error, r.Fix = ExpiryMissing, "the node holds no certificate mtlsctl installed", "mtlsctl apply"
		default:
			r.Subject = n.CertSubject
			r.judge(n.CertNotAfter, now, warnDays)
		}
		rows = append(rows, r)
	}
	return rows
}

// expiryResult is the error CheckExpiration returns for rows: a failure
// (exit 1) when one expired or could not be read, an ExpiryWarning (exit 4)
// when one only expires within warnDays, nil when all are ok.
func expiryResult(rows []ExpiryRow, warnDays int) error {
	counts := map[ExpiryState]int{}
	for _, r := range rows {
		counts[r.State]++
	}
	failed := len(rows) - counts[ExpiryOK] - counts[ExpiryWarn]
	switch {
	case failed > 0:
		return fmt.Errorf("%w: %s", ErrReported, expiryCounts(rows, warnDays))
	case counts[ExpiryWarn] > 0:
		return ExpiryWarning{Certs: counts[ExpiryWarn], WarnDays: warnDays}
	}
	return nil
}

// expiryCounts is the summary line: "6 certificate(s): 4 ok, 1 warning
// (within 30 days), 1 unreachable".
func expiryCounts(rows []ExpiryRow, warnDays int) string {
	counts := map[ExpiryState]int{}
	for _, r := range rows {
		counts[r.State]++
	}
	var parts []string
	for _, s := range []ExpiryState{ExpiryOK, ExpiryWarn, ExpiryExpired, ExpiryUnreachable, ExpiryUnreadable, ExpiryMissing} {
		if counts[s] == 0 {
			continue
		}
		p := fmt.Sprintf("%d %s", counts[s], s)
		if s == ExpiryWarn {
			p += fmt.Sprintf(" (within %d days)", warnDays)
		}
		parts = append(parts, p)
	}
	return fmt.Sprintf("%d certificate(s): %s", len(rows), strings.Join(parts, ", "))
}

// writeExpiry prints the expiry table, then each error once and what to
// run about each certificate that is not ok, then the counts.
func writeExpiry(w io.Writer, rows []ExpiryRow, warnDays int) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tROLE\tSUBJECT\tEXPIRES\tDAYS LEFT\tSTATE")
	for _, r := range rows {
		role := r.Kind
		switch {
		case r.Server != nil && *r.Server:
			role = "server"
		case r.Server != nil:
			role = "client"
		}
		expires, days := "-", "-"
		if r.NotAfter != nil {
			expires = r.NotAfter.Format("2006-01-02 15:04 MST")
		}
		if r.DaysLeft != nil {
			days = fmt.Sprint(*r.DaysLeft)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, role, orDash(r.Subject), expires, days, r.State)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// Each error once, and what to run: one line for the nodes a single
	// `rotate certs --nodes` renews together.
	var notes, renew []string
	for _, r := range rows {
		switch {
		case r.Kind == "node" && r.State == ExpiryWarn:
			renew = append(renew, r.Name)
		case r.Error != "" && r.Fix != "":
			notes = append(notes, fmt.Sprintf("%s: %s: %s: run %s", r.Name, r.State, r.Error, fixText(r)))
		case r.Error != "":
			notes = append(notes, fmt.Sprintf("%s: %s: %s", r.Name, r.State, r.Error))
		case r.State == ExpiryWarn:
			notes = append(notes, fmt.Sprintf("%s: expires in %d day(s), on %s: run %s", r.Name, *r.DaysLeft, r.NotAfter.Format(time.DateOnly), fixText(r)))
		case r.Fix != "":
			notes = append(notes, fmt.Sprintf("%s: %s on %s: run %s", r.Name, r.State, r.NotAfter.Format(time.DateOnly), fixText(r)))
		}
	}
	if len(renew) > 0 {
		notes = append(notes, fmt.Sprintf("%s: expire(s) within %d days: run `mtlsctl rotate certs --nodes %s`", strings.Join(renew, ", "), warnDays, strings.Join(renew, ",")))
	}
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range notes {
			fmt.Fprintln(w, n)
		}
	}
	_, err := fmt.Fprintf(w, "\n%s\n", expiryCounts(rows, warnDays))
	return err
}

// fixText quotes each command of r.Fix and says why for the old CA of a
// rollover.
func fixText(r ExpiryRow) string {
	s := "`" + strings.ReplaceAll(r.Fix, ", then ", "`, then `") + "`"
	if r.Kind == "trusted-ca" {
		s += " to finish the CA rollover, which drops this old CA"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
