package rotate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// The phases of a CA rollover, in order. Each pushes the nodes' bundles
// (with a reload) and is verified before the next starts.
const (
	// PhaseCreate makes the new CA; the old one stays trusted and archived.
	PhaseCreate = "create"
	// PhaseTrust pushes the CA bundle old+new to every node.
	PhaseTrust = "trust"
	// PhaseReissue reissues every leaf from the new CA and pushes them.
	PhaseReissue = "reissue"
	// PhaseDrop removes the old CA from the bundle and pushes it.
	PhaseDrop = "drop"
)

var caPhases = []string{PhaseCreate, PhaseTrust, PhaseReissue, PhaseDrop}

// CAOptions configures [RotateCA].
type CAOptions struct {
	// State is the admin-side state directory (the caller holds its lock).
	State *ca.State
	// Topology is the cluster whose leaves are reissued.
	Topology *inventory.Topology
	// NewCA configures the new CA (zero: Consul's defaults).
	NewCA ca.CAOptions
	// Generate configures the reissue of the leaves.
	Generate ca.GenerateOptions
	// Apply pushes every node's bundle from the state, with a reload.
	Apply func(ctx context.Context, phase string) error
	// Verify checks the cluster after a phase's push: healthy, and every
	// agent serving the certificate of its bundle, verified against the
	// bundle's CA file.
	Verify func(ctx context.Context, phase string) error
	// Log receives one line per phase (default: discarded).
	Log io.Writer
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// CAResult is what a completed CA rollover did.
type CAResult struct {
	// Old and New are the CA fingerprints.
	Old       string        `json:"old"`
	New       string        `json:"new"`
	ResumedAt string        `json:"resumed_at,omitempty"`
	Phases    []StepTime    `json:"phases"`
	Duration  time.Duration `json:"duration_ns"`
}

// CAError says where a CA rollover stopped and how to resume.
type CAError struct {
	Phase string
	Old   string
	New   string
	Err   error
}

func (e *CAError) Error() string {
	where := "unknown"
	switch e.Phase {
	case PhaseCreate:
		where = fmt.Sprintf("nothing was pushed; the state's CA is %s", orDash(e.Old))
	case PhaseTrust:
		where = fmt.Sprintf("the state holds the new CA %s and still trusts the old CA %s; nodes may hold the old bundle or old+new; every node still serves a leaf of the old CA", e.New, e.Old)
	case PhaseReissue:
		where = fmt.Sprintf("every node trusts both CAs; some nodes may serve leaves of the new CA %s, others of the old CA %s (both verify)", e.New, e.Old)
	case PhaseDrop:
		where = fmt.Sprintf("every node serves a leaf of the new CA %s; some nodes may still trust the old CA %s as well", e.New, e.Old)
	}
	return fmt.Sprintf("rotate ca stopped at phase %q: %v\n  where the cluster is: %s\n  the old CA key stays archived in the state (ca/archive/)\n  to resume: fix the cause, then re-run `mtlsctl rotate ca` (it resumes at phase %q)",
		e.Phase, e.Err, where, e.Phase)
}

// Unwrap returns the cause.
func (e *CAError) Unwrap() error { return e.Err }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// caProgress is what the state directory records of a CA rollover
// (ca.CARotation): the phase it is at, fingerprints only.
type caProgress struct {
	Phase   string    `json:"phase"`
	Old     string    `json:"old_ca_fingerprint"`
	New     string    `json:"new_ca_fingerprint,omitempty"`
	Started time.Time `json:"started"`
	Updated time.Time `json:"updated"`
}

// CAInProgress reports the phase a CA rollover recorded in the state
// directory ("" when none is in progress).
func CAInProgress(st *ca.State) (string, error) {
	var p caProgress
	ok, err := loadProgress(st, ca.CARotation, &p)
	if !ok || err != nil {
		return "", err
	}
	return p.Phase, nil
}

// RotateCA rolls the cluster over to a new CA without downtime, in phases
// each pushed, reloaded and verified before the next: create the new CA
// (the old one is archived and stays trusted), push the bundle old+new,
// reissue every leaf from the new CA and push them, drop the old CA from the
// bundle and push it. It resumes a rollover recorded in the state directory
// at its phase; a failure stops at once with a *CAError.
func RotateCA(ctx context.Context, o CAOptions) (*CAResult, error) {
	if o.State == nil || o.Topology == nil || o.Apply == nil || o.Verify == nil {
		return nil, errors.New("rotate ca: state, topology, apply and verify are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	path := o.State.RotationFile(ca.CARotation) // for messages
	start := o.Now()
	cur, err := o.State.LoadCA()
	if err != nil {
		return nil, err
	}
	res := &CAResult{}
	var p caProgress
	ok, err := loadProgress(o.State, ca.CARotation, &p)
	if err != nil {
		return nil, err
	}
	switch {
	case !ok:
		p = caProgress{Phase: PhaseCreate, Old: cur.Fingerprint(), Started: o.Now().UTC()}
	case !slices.Contains(caPhases, p.Phase):
		return nil, fmt.Errorf("%w: %s: unknown phase %q: remove the file to start again", ErrProgressMismatch, path, p.Phase)
	default:
		res.ResumedAt = p.Phase
		fmt.Fprintf(o.Log, "ca resume    at phase %q: old CA %s, new CA %s\n", p.Phase, p.Old, orDash(p.New))
		if p.Phase != PhaseCreate && cur.Fingerprint() != p.New {
			return nil, fmt.Errorf("%w: %s expects the current CA %s, the state holds %s", ErrProgressMismatch, path, p.New, cur.Fingerprint())
		}
	}
	save := func(phase string) error {
		p.Phase, p.Updated = phase, o.Now().UTC()
		if err := saveProgress(o.State, ca.CARotation, p); err != nil {
			return fmt.Errorf("record CA rollover progress: %w", err)
		}
		return nil
	}
	fail := func(phase string, err error) error { return &CAError{Phase: phase, Old: p.Old, New: p.New, Err: err} }
	if err := save(p.Phase); err != nil {
		return nil, err
	}
	for i := slices.Index(caPhases, p.Phase); i < len(caPhases); i++ {
		phase := caPhases[i]
		t0 := o.Now()
		switch phase {
		case PhaseCreate:
			if cur.Fingerprint() == p.Old {
				// Not created yet (a resumed create may find it done).
				_, nc, err := o.State.RotateCA(o.NewCA)
				if err != nil {
					return nil, fail(phase, err)
				}
				cur = nc
			}
			p.New = cur.Fingerprint()
			fmt.Fprintf(o.Log, "ca create    new CA %s (%s, expires %s); old CA %s archived and still trusted\n",
				p.New, cur.Cert.Subject, cur.Cert.NotAfter.Format(time.DateOnly), p.Old)
		case PhaseTrust:
			fmt.Fprintf(o.Log, "ca trust     pushing the CA bundle old+new to every node (reload)\n")
			if err := applyVerify(ctx, o, phase); err != nil {
				return nil, fail(phase, err)
			}
		case PhaseReissue:
			rep, err := o.State.Generate(o.Topology, o.Generate)
			if err != nil {
				return nil, fail(phase, err)
			}
			n := 0
			for _, nr := range rep.Nodes {
				if nr.Action != ca.Kept {
					n++
				}
			}
			fmt.Fprintf(o.Log, "ca reissue   %d leaf certificate(s) issued by the new CA; pushing them (reload)\n", n)
			if err := applyVerify(ctx, o, phase); err != nil {
				return nil, fail(phase, err)
			}
		case PhaseDrop:
			trusted, err := o.State.TrustedCAs()
			if err != nil {
				return nil, fail(phase, err)
			}
			for _, tc := range trusted {
				if ca.CertFingerprint(tc.Cert.Raw) == p.Old {
					if err := o.State.RemoveTrustedCA(p.Old); err != nil {
						return nil, fail(phase, err)
					}
				}
			}
			fmt.Fprintf(o.Log, "ca drop      old CA %s removed from the bundle; pushing it (reload)\n", p.Old)
			if err := applyVerify(ctx, o, phase); err != nil {
				return nil, fail(phase, err)
			}
		}
		res.Phases = append(res.Phases, StepTime{Step: phase, Duration: o.Now().Sub(t0)})
		if i+1 < len(caPhases) {
			if err := save(caPhases[i+1]); err != nil {
				return nil, fail(caPhases[i+1], err)
			}
		}
	}
	if err := o.State.ClearRotation(ca.CARotation); err != nil {
		return nil, fmt.Errorf("rotate ca: done, but %w", err)
	}
	res.Old, res.New = p.Old, p.New
	res.Duration = o.Now().Sub(start)
	fmt.Fprintf(o.Log, "ca done      CA %s replaced by %s in %s\n", res.Old, res.New, res.Duration.Round(time.Millisecond))
	return res, nil
}

func applyVerify(ctx context.Context, o CAOptions, phase string) error {
	if err := o.Apply(ctx, phase); err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	if err := o.Verify(ctx, phase); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	return nil
}

// ErrNotServed means an agent does not serve the certificate mtlsctl
// issued for it.
var ErrNotServed = errors.New("agent does not serve the issued certificate")

// ServedError is one node whose agent serves another certificate (or none).
type ServedError struct {
	Node   string
	Want   string // fingerprint of the issued certificate
	Served string // fingerprint of the served one ("" when none was read)
}

func (e *ServedError) Error() string {
	if e.Served == "" {
		return fmt.Sprintf("node %s: %v: no certificate read (want %s)", e.Node, ErrNotServed, e.Want)
	}
	return fmt.Sprintf("node %s: %v: serves %s, want %s (was it reloaded?)", e.Node, ErrNotServed, e.Served, e.Want)
}

// Unwrap returns ErrNotServed.
func (e *ServedError) Unwrap() error { return ErrNotServed }

// VerifyServed checks, for every node of want (node → fingerprint of the
// certificate issued for it), that served (node → fingerprint of the
// certificate its agent presents) matches. It returns the mismatches as
// joined *ServedError, in node order.
func VerifyServed(want, served map[string]string) error {
	nodes := make([]string, 0, len(want))
	for n := range want {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	var errs []error
	for _, n := range nodes {
		if got := served[n]; !strings.EqualFold(got, want[n]) || got == "" {
			errs = append(errs, &ServedError{Node: n, Want: want[n], Served: got})
		}
	}
	return errors.Join(errs...)
}
