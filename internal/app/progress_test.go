package app

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/internal/progress"
)

// TestApplyLiveProgress runs apply as on a terminal: the live display (one
// final line per node) comes first on stdout, then the summary table.
func TestApplyLiveProgress(t *testing.T) {
	c, d := sandboxCluster(t)
	out := &bytes.Buffer{}
	c.Stdout, c.Interactive = out, true
	if err := Apply(context.Background(), c, d, ApplyOptions{Yes: true}); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	table := strings.Index(text, "NODE")
	if table < 0 {
		t.Fatalf("no summary table:\n%s", text)
	}
	display := text[:table]
	for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
		if !regexp.MustCompile(`(?m)^` + n + ` +done +\d+ files +[0-9.]+m?s`).MatchString(display) {
			t.Errorf("%s: no final live line before the table:\n%q", n, display)
		}
	}
}

// TestApplyJSONHasNoLiveDisplay: with -o json stdout is one JSON document,
// even on a terminal.
func TestApplyJSONHasNoLiveDisplay(t *testing.T) {
	c, d := sandboxCluster(t)
	out := &bytes.Buffer{}
	c.Stdout, c.Interactive, c.JSON = out, true, true
	if err := Apply(context.Background(), c, d, ApplyOptions{Yes: true}); err != nil {
		t.Fatal(err)
	}
	if s := strings.TrimSpace(out.String()); !strings.HasPrefix(s, "{") || strings.Contains(s, "\x1b[") {
		t.Errorf("stdout is not only JSON:\n%q", s)
	}
}

func TestReporterAdapter(t *testing.T) {
	var got []progress.Event
	buf := &bytes.Buffer{}
	r := reporter{d: progress.New(buf, false, nil), annotate: func(e progress.Event) progress.Event {
		got = append(got, e)
		return sandboxProgress(e)
	}}
	r.Report(distribute.Event{Node: "n1", Step: "stage", Msg: "7 files"})
	r.Report(distribute.Event{Node: "n1", Step: "validate", Msg: "consul validate passed"})
	if len(got) != 2 || got[0].Files != 7 || got[1].Files != 0 {
		t.Errorf("events %+v", got)
	}
	if strings.Contains(buf.String(), "validate passed") || !strings.Contains(buf.String(), "nothing was validated") {
		t.Errorf("sandbox validate line:\n%s", buf)
	}
}
