package app

import (
	"fmt"

	"github.com/mtlsctl/mtlsctl/consulcfg"
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

// startProgress points o.Progress at a display of the bundles' nodes: live
// on a terminal (not with -o json, whose stdout is one JSON document),
// plain lines on stderr otherwise. Call stop before printing the summary.
func (c Common) startProgress(o *distribute.Options, d DistOptions, bundles []consulcfg.Bundle) (stop func()) {
	if !c.Interactive || c.JSON {
		o.Progress = c.plainProgress(d)
		return func() {}
	}
	nodes := make([]string, len(bundles))
	for i, b := range bundles {
		nodes[i] = b.Node
	}
	disp := progress.New(c.stdout(), true, nodes)
	o.Progress = reporter{d: disp, annotate: d.annotate}
	return disp.Close
}

// plainProgress prints progress as plain lines on stderr, for steps run
// outside a live display (rotations, the health wait).
func (c Common) plainProgress(d DistOptions) distribute.Reporter {
	return reporter{d: progress.New(c.stderr(), false, nil), annotate: d.annotate}
}
