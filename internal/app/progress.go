package app

import (
	"errors"
	"fmt"
	"sync"

	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/internal/progress"
)

// reporter adapts distribute's progress events to a progress.Display.
type reporter struct {
	d *progress.Display
	// annotate rewrites an event before it is shown (nil: as is); the demo
	// uses it to say what its sandbox really did.
	annotate func(progress.Event) progress.Event
}

func (r reporter) Report(e distribute.Event) {
	pe := progress.Event{Node: e.Node, Step: e.Step, Msg: e.Msg, Err: e.Err, Time: e.Time}
	if e.Step == "stage" {
		// distribute gives the count only in the stage step's text, "N files".
		fmt.Sscanf(e.Msg, "%d files", &pe.Files)
	}
	if r.annotate != nil {
		pe = r.annotate(pe)
	}
	r.d.Report(pe)
}

// startProgress shows the progress of r's session on a display of its
// nodes: live on a terminal (not with -o json, whose stdout is one JSON
// document), plain lines on stderr otherwise. Call stop before printing the
// summary; progress then goes back to plain lines. Every caller prints a
// per-node report after stop that carries each failed node's error, so
// while it runs a node's final error is not shown in full (see
// failuresReported): it would be said twice.
func (c Common) startProgress(r *remote, d DistOptions) (stop func()) {
	if !c.Interactive || c.JSON {
		plain := r.rep.set(nil)
		r.rep.set(failuresReported{to: plain})
		return func() { r.rep.set(plain) }
	}
	nodes := make([]string, len(r.bundles))
	for i, b := range r.bundles {
		nodes[i] = b.Node
	}
	disp := progress.New(c.stdout(), true, nodes)
	plain := r.rep.set(failuresReported{to: reporter{d: disp, annotate: d.annotate}, live: true})
	return func() {
		r.rep.set(plain)
		disp.Close()
	}
}

// switchReporter forwards events to the reporter of the moment: a command
// opens one session for all its phases, and each phase has its own display.
type switchReporter struct {
	mu sync.Mutex
	to distribute.Reporter
}

// set makes to the target and returns the previous one.
func (s *switchReporter) set(to distribute.Reporter) distribute.Reporter {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.to
	s.to = to
	return old
}

// Report forwards e.
func (s *switchReporter) Report(e distribute.Event) {
	s.mu.Lock()
	to := s.to
	s.mu.Unlock()
	if to != nil {
		to.Report(e)
	}
}

// plainProgress prints progress as plain lines on stderr, for steps run
// outside a live display (rotations, the health wait).
func (c Common) plainProgress(d DistOptions) distribute.Reporter {
	return reporter{d: progress.New(c.stderr(), false, nil), annotate: d.annotate}
}

// failuresReported forwards progress events, except a node's final error
// (a *NodeError event with no message of its own: what the per-node report
// prints): plain lines leave it out, a live display shows the node failed
// and points at the report. Events with a message of their own (a partial
// failure, e.g. old files not read for a diff) pass unchanged.
type failuresReported struct {
	to   distribute.Reporter
	live bool
}

// errInReport stands for a node's error on a live display line.
var errInReport = errors.New("failed (the error is in the report below)")

func (f failuresReported) Report(e distribute.Event) {
	var ne *distribute.NodeError
	if e.Err != nil && e.Msg == "" && errors.As(e.Err, &ne) {
		if !f.live {
			return
		}
		e.Err = errInReport
	}
	if f.to != nil {
		f.to.Report(e)
	}
}
