// Package progress shows what a command is doing on each node while it
// runs. On a terminal it is a live display, one line per node (name, current
// phase, files, elapsed time, then done or failed), drawn by
// github.com/vbauerster/mpb/v8; elsewhere (CI logs, pipes) it prints one
// plain line per step that changes something or fails.
//
// It owns only the display. It must not import distribute or any package
// that acts on nodes: callers adapt their own events to [Event]. It never
// prints the summary: after [Display.Close] the caller prints its table.
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// Event is one step on one node.
type Event struct {
	Node  string
	Step  string // connect, inspect, lock, stage, verify, validate, commit, reload, restart, done, ...
	Msg   string // short human text; never a secret
	Files int    // files the step works on; 0 when unknown
	Err   error  // the step failed
	Time  time.Time
}

// Final phases of a node in the live display.
const (
	PhaseDone       = "done"
	PhaseFailed     = "failed"
	PhaseNotStarted = "not started" // no event arrived before Close
)

// QuietSteps are the read-only steps plain mode leaves out unless they fail:
// on a 100-node run they would bury the steps that change something.
var QuietSteps = map[string]bool{"connect": true, "inspect": true, "lock": true, "verify": true, "done": true, "download": true, "read": true}

// noteWidth bounds the message shown on a live line; the full text of an
// error is in the caller's summary.
const noteWidth = 60

// Display receives events from many goroutines and shows them.
type Display struct {
	w    io.Writer
	live bool
	p    *mpb.Progress // live mode only

	mu     sync.Mutex
	nodes  map[string]*node
	closed bool
}

// node is what the live display knows about one node.
type node struct {
	name       string
	phase      string // the current step, or a final phase
	note       string
	files      int
	err        error
	start, end time.Time
	final      bool

	once sync.Once // makes bar, outside d.mu
	bar  *mpb.Bar
}

// New returns a display writing to w. With live, w must be a terminal (or,
// in tests, any writer: the display then renders at Close); nodes are the
// lines shown from the start, in order (nodes first seen in an event are
// added below). Without live, nodes is unused and New prints nothing until
// an event comes.
func New(w io.Writer, live bool, nodes []string) *Display {
	d := &Display{w: w, live: live && !sizeless(w), nodes: map[string]*node{}}
	if !d.live {
		return d
	}
	// WithAutoRefresh keeps redrawing even when mpb cannot tell w is a
	// terminal (the caller decided it is); WithWidth applies only then.
	d.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(120), mpb.WithAutoRefresh(), mpb.WithRefreshRate(150*time.Millisecond))
	for _, name := range nodes {
		d.mu.Lock()
		n := d.nodeLocked(name)
		d.mu.Unlock()
		d.addBar(n)
	}
	return d
}

// sizeless reports a terminal that does not know its size (some CI
// pseudo-terminals): mpb would draw nothing on it, so plain lines are used.
func sizeless(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false
	}
	cols, _, err := term.GetSize(int(f.Fd()))
	return err != nil || cols <= 0
}

// Report shows one event. It is safe to call from many goroutines; events
// after Close are dropped.
func (d *Display) Report(e Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if !d.live {
		d.plain(e)
		return
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	n := d.nodeLocked(e.Node)
	if n.start.IsZero() {
		n.start = e.Time
	}
	if e.Files > 0 {
		n.files = e.Files
	}
	var finish func()
	switch {
	case n.final:
		// A late event on a finished line changes nothing shown.
	case e.Err != nil:
		n.err, n.note = e.Err, e.Step+": "+e.Err.Error()
		finish = n.finishLocked(e.Time)
	case e.Step == PhaseDone:
		finish = n.finishLocked(e.Time)
		n.note = e.Msg
	default:
		n.phase, n.note = e.Step, e.Msg
	}
	d.mu.Unlock()
	// mpb calls back into the decorators, which take d.mu: never call
	// mpb while holding it.
	d.addBar(n)
	if finish != nil {
		finish()
	}
}

// Close stops the live display, leaving each node's final line on screen:
// done, failed (with the step and error), or not started. The caller then
// prints its summary. Close is a no-op in plain mode and when called again.
func (d *Display) Close() {
	if !d.live {
		return
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	now := time.Now()
	var finish []func()
	var all []*node
	for _, n := range d.nodes {
		all = append(all, n)
		if !n.final {
			finish = append(finish, n.finishLocked(now))
		}
	}
	d.mu.Unlock()
	for _, n := range all {
		d.addBar(n)
	}
	for _, f := range finish {
		f()
	}
	d.p.Wait()
}

// plain prints e as one line when it changes something or failed.
func (d *Display) plain(e Event) {
	if e.Err == nil && QuietSteps[e.Step] {
		return
	}
	msg := e.Msg
	if e.Err != nil {
		msg = strings.TrimSpace(msg + " FAILED: " + e.Err.Error())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.w, "  %-12s %-8s %s\n", e.Node, e.Step, msg)
}

// nodeLocked returns the node's state, adding it when new. d.mu is held.
func (d *Display) nodeLocked(name string) *node {
	n, ok := d.nodes[name]
	if !ok {
		n = &node{name: name, phase: "waiting"}
		d.nodes[name] = n
	}
	return n
}

// addBar makes n's line once. It must be called without d.mu: mpb renders
// the existing lines meanwhile, and their decorators take d.mu.
func (d *Display) addBar(n *node) {
	n.once.Do(func() {
		field := func(f func(*node) string, wc ...decor.WC) decor.Decorator {
			return decor.Any(func(decor.Statistics) string {
				d.mu.Lock()
				defer d.mu.Unlock()
				return f(n)
			}, wc...)
		}
		// Add fails only once the display is shut down; the line is then
		// simply not shown.
		n.bar, _ = d.p.Add(0, mpb.NopStyle().Build(), mpb.PrependDecorators(
			decor.Name(n.name, decor.WCSyncSpaceR),
			field(func(n *node) string { return n.phase }, decor.WCSyncSpaceR),
			field((*node).filesText, decor.WCSyncSpaceR),
			field(func(n *node) string { return n.elapsed(time.Now()) }, decor.WCSyncSpaceR),
			field((*node).noteText),
		))
	})
}

// finishLocked sets the node's final phase and returns what completes its
// bar, to be called without d.mu.
func (n *node) finishLocked(at time.Time) func() {
	n.final, n.end = true, at
	if n.err == nil {
		n.note = "" // the last step's text would read as the outcome
	}
	switch {
	case n.err != nil:
		n.phase = PhaseFailed
		return func() {
			if n.bar != nil {
				n.bar.Abort(false)
			}
		}
	case n.start.IsZero():
		n.phase = PhaseNotStarted
	default:
		n.phase = PhaseDone
	}
	return func() {
		if n.bar != nil {
			n.bar.SetTotal(-1, true)
		}
	}
}

func (n *node) filesText() string {
	if n.files == 0 {
		return ""
	}
	return fmt.Sprintf("%d files", n.files)
}

func (n *node) elapsed(now time.Time) string {
	if n.start.IsZero() {
		return "-"
	}
	if n.final {
		now = n.end
	}
	return now.Sub(n.start).Round(100 * time.Millisecond).String()
}

func (n *node) noteText() string {
	note, _, _ := strings.Cut(n.note, "\n")
	if note == n.filesText() {
		return "" // "N files" is in its own column
	}
	if r := []rune(note); len(r) > noteWidth {
		note = string(r[:noteWidth-1]) + "…"
	}
	return note
}
