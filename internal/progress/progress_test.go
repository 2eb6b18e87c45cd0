package progress

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for mpb's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestPlain(t *testing.T) {
	var out syncBuffer
	d := New(&out, false, []string{"n1", "n2"})
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	events := []Event{
		{Node: "n1", Step: "connect", Msg: "root@10.0.0.1:22", Time: t0},
		{Node: "n1", Step: "inspect"},
		{Node: "n1", Step: "stage", Msg: "3 files", Files: 3},
		{Node: "n1", Step: "verify"},
		{Node: "n1", Step: "commit"},
		{Node: "n1", Step: "reload", Msg: "systemctl reload consul"},
		{Node: "n1", Step: "done"},
		{Node: "n2", Step: "connect", Err: errors.New("connection refused")},
	}
	for _, e := range events {
		d.Report(e)
	}
	d.Close()
	want := "" +
		"  n1           stage    3 files\n" +
		"  n1           commit   \n" +
		"  n1           reload   systemctl reload consul\n" +
		"  n2           connect  FAILED: connection refused\n"
	if got := out.String(); got != want {
		t.Errorf("plain output:\n%s\nwant:\n%s", got, want)
	}
}

// TestPlainConcurrent reports from many goroutines: lines must not
// interleave (run with -race).
func TestPlainConcurrent(t *testing.T) {
	var out syncBuffer
	d := New(&out, false, nil)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			d.Report(Event{Node: fmt.Sprintf("n%d", i), Step: "stage", Msg: "2 files"})
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 50 {
		t.Fatalf("%d lines, want 50", len(lines))
	}
	for _, l := range lines {
		if !regexp.MustCompile(`^  n\d+ +stage +2 files$`).MatchString(l) {
			t.Errorf("mangled line %q", l)
		}
	}
}

// lastFrame is the text of the last rendering: mpb redraws in place, so
// the buffer holds every frame; the final one is after the last cursor-up.
func lastFrame(s string) string {
	if i := strings.LastIndex(s, "\x1b["); i >= 0 {
		if j := strings.IndexAny(s[i:], "ABCDEFGHJKSTfmu"); j >= 0 {
			s = s[i+j+1:]
		}
	}
	return s
}

func TestLive(t *testing.T) {
	var out syncBuffer
	nodes := []string{"n1", "n2", "node-three", "n4"}
	d := New(&out, true, nodes)
	var wg sync.WaitGroup
	run := func(node string, steps ...Event) {
		wg.Go(func() {
			for _, e := range steps {
				e.Node = node
				d.Report(e)
				time.Sleep(time.Millisecond)
			}
		})
	}
	run("n1", Event{Step: "connect"}, Event{Step: "stage", Msg: "4 files", Files: 4}, Event{Step: "commit"}, Event{Step: "done"})
	run("n2", Event{Step: "connect"}, Event{Step: "stage", Files: 2}, Event{Step: "verify", Err: errors.New("sha256 mismatch\nsecond line")})
	run("node-three", Event{Step: "connect"}, Event{Step: "inspect"})
	// n4 never reports; n5 was not announced.
	run("n5", Event{Step: "connect"}, Event{Step: "done"})
	wg.Wait()
	d.Close()
	d.Close() // idempotent
	d.Report(Event{Node: "n1", Step: "late"})

	frame := lastFrame(out.String())
	want := map[string]*regexp.Regexp{
		"n1":         regexp.MustCompile(`(?m)^n1 +done +4 files +[0-9.]+m?s`),
		"n2":         regexp.MustCompile(`(?m)^n2 +failed +2 files +[0-9.]+m?s +verify: sha256 mismatch *$`),
		"node-three": regexp.MustCompile(`(?m)^node-three +done +[0-9.]+m?s`),
		"n4":         regexp.MustCompile(`(?m)^n4 +not started +-`),
		"n5":         regexp.MustCompile(`(?m)^n5 +done`),
	}
	for node, re := range want {
		if !re.MatchString(frame) {
			t.Errorf("%s: final line does not match %s:\n%q", node, re, frame)
		}
	}
	if strings.Contains(frame, "late") || strings.Contains(frame, "second line") {
		t.Errorf("unexpected text in the final frame:\n%s", frame)
	}
	// Lines keep the order the nodes were announced in.
	if i, j := strings.Index(frame, "n1 "), strings.Index(frame, "n4 "); i < 0 || j < i {
		t.Errorf("node order:\n%s", frame)
	}
}

func TestLiveNoEvents(t *testing.T) {
	var out syncBuffer
	d := New(&out, true, nil)
	d.Close()
	if strings.TrimSpace(lastFrame(out.String())) != "" {
		t.Errorf("output without nodes: %q", out.String())
	}
}
