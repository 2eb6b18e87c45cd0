package consulapi

// Intentions sync against real Consul agents: one `consul agent -dev` (a
// single server with Connect enabled) per version, on free loopback ports,
// shared by the subtests in turn; every subtest starts with no intention.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/internal/testinfra/consultest"
)

// wireEvent is one intention write seen on the wire: when it was sent and
// when its answer came, on one counter.
type wireEvent struct {
	start, end int
	method     string
	action     string // of the intention sent; "" for a delete
	pair       string
	id         string // delete
	code       int
}

// recorder is the test client's transport: it records intention writes in
// order and can fail some without sending them.
type recorder struct {
	base http.RoundTripper

	mu     sync.Mutex
	seq    int
	events []*wireEvent
	fault  func(e *wireEvent) bool
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(req.URL.Path, "/v1/connect/intentions") || req.Method == http.MethodGet {
		return r.base.RoundTrip(req)
	}
	e := &wireEvent{method: req.Method}
	if req.Method == http.MethodDelete {
		e.id = strings.TrimPrefix(req.URL.Path, "/v1/connect/intentions/")
	} else if req.Body != nil {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		var ixn api.Intention
		if err := json.Unmarshal(body, &ixn); err == nil {
			e.action, e.pair = string(ixn.Action), ixn.SourceName+" -> "+ixn.DestinationName
		}
	}
	r.mu.Lock()
	r.seq++
	e.start = r.seq
	r.events = append(r.events, e)
	fault := r.fault != nil && r.fault(e)
	r.mu.Unlock()
	var resp *http.Response
	var err error
	if fault {
		resp = &http.Response{StatusCode: 500, Status: "500 Internal Server Error", Header: http.Header{},
			Body: io.NopCloser(strings.NewReader("injected fault")), Request: req}
	} else {
		resp, err = r.base.RoundTrip(req)
	}
	r.mu.Lock()
	r.seq++
	e.end = r.seq
	if resp != nil {
		e.code = resp.StatusCode
	}
	r.mu.Unlock()
	return resp, err
}

func (r *recorder) reset(fault func(*wireEvent) bool) []*wireEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.events
	r.events, r.fault = nil, fault
	return ev
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// devAgent starts `consul agent -dev` of version on loopback (stopped, by
// its PID, when the test ends) and returns a client of its HTTP API whose
// intention writes go through the returned recorder.
func devAgent(t *testing.T, version string, extraHCL ...string) (*api.Client, *recorder) {
	t.Helper()
	bin := consultest.Binary(t, version)
	dir := t.TempDir()
	ports := freePorts(t, 4)
	hcl := fmt.Sprintf("ports { http = %d serf_lan = %d serf_wan = %d server = %d dns = -1 grpc = -1 https = -1 }", ports[0], ports[1], ports[2], ports[3])
	hcl += " " + strings.Join(extraHCL, " ")
	logPath := filepath.Join(dir, "consul.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "agent", "-dev", "-node", "intentions-test", "-bind", "127.0.0.1", "-client", "127.0.0.1", "-hcl", hcl)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Logf("consul %s (pid %d) did not stop on SIGINT: killing it", version, pid)
			_ = cmd.Process.Kill()
			<-done
		}
	})
	rec := &recorder{base: &http.Transport{MaxIdleConnsPerHost: IntentionConcurrency}}
	cl, err := api.NewClient(&api.Config{Address: fmt.Sprintf("127.0.0.1:%d", ports[0]), HttpClient: &http.Client{Transport: rec, Timeout: 30 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		leader, err := cl.Status().Leader()
		if err == nil && leader != "" {
			break
		}
		select {
		case <-done:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("consul %s exited:\n%s", version, log)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Since(start) > time.Minute {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("consul %s has no leader after a minute (%v):\n%s", version, err, log)
		}
	}
	t.Logf("consul %s -dev (pid %d) on 127.0.0.1:%d, leader after %s", version, pid, ports[0], time.Since(start).Round(time.Millisecond))
	return cl, rec
}

// liveAll lists every intention as Consul holds it.
func liveAll(t *testing.T, cl *api.Client) []*api.Intention {
	t.Helper()
	ixns, _, err := cl.Connect().Intentions(nil)
	if err != nil {
		t.Fatal(err)
	}
	return ixns
}

func findLive(ixns []*api.Intention, src, dst string) *api.Intention {
	for _, i := range ixns {
		if i.SourceName == src && i.DestinationName == dst {
			return i
		}
	}
	return nil
}

// createRaw makes an intention directly (a foreign one when meta is nil).
func createRaw(t *testing.T, cl *api.Client, src, dst, action, desc string, meta map[string]string) string {
	t.Helper()
	id, _, err := cl.Connect().IntentionCreate(&api.Intention{SourceName: src, DestinationName: dst, SourceType: api.IntentionSourceConsul,
		Action: api.IntentionAction(action), Description: desc, Meta: meta}, nil)
	if err != nil {
		t.Fatalf("create %s %s -> %s: %v", action, src, dst, err)
	}
	return id
}

// wipe deletes every intention.
func wipe(t *testing.T, cl *api.Client) {
	t.Helper()
	for _, i := range liveAll(t, cl) {
		if _, err := cl.Connect().IntentionDelete(i.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func mustPlan(t *testing.T, c *Cluster, desired []consulcfg.Intention, cluster string) *IntentionPlan {
	t.Helper()
	p, err := c.PlanIntentions(context.Background(), desired, cluster)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustApply(t *testing.T, c *Cluster, p *IntentionPlan) *IntentionResult {
	t.Helper()
	res, err := c.ApplyIntentions(context.Background(), p)
	if err != nil {
		t.Fatalf("apply: %v (%s)", err, res.Summary())
	}
	return res
}

// assertConverged checks that planning desired again changes nothing.
func assertConverged(t *testing.T, c *Cluster, desired []consulcfg.Intention, cluster string) {
	t.Helper()
	p := mustPlan(t, c, desired, cluster)
	if p.Changes() != 0 || p.Keep != len(desired)-len(p.Conflicts) {
		t.Errorf("re-plan is not empty: %s\n%s", p.Summary(), strings.Join(p.Lines(), "\n"))
	}
}

func TestIntentionsLive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real Consul agents")
	}
	for _, version := range []string{"1.6.2", "1.13.9"} {
		t.Run(version, func(t *testing.T) {
			cl, rec := devAgent(t, version)
			c := agentCluster(t, cl)
			ctx := context.Background()
			for _, st := range []struct {
				name string
				fn   func(t *testing.T)
			}{
				{"create from empty, re-plan empty", func(t *testing.T) {
					desired := meshIntentions(12)
					p := mustPlan(t, c, desired, "t")
					if len(p.Create) != 13 || p.Changes() != 13 || p.Keep != 0 || len(p.Conflicts) != 0 {
						t.Fatalf("plan %s", p.Summary())
					}
					if l := p.Lines(); len(l) != 13 || l[0] != "+ deny * -> *" || !strings.HasPrefix(l[1], "+ allow egress-198-18-0-1 -> zk-2181-198-18-0-2") {
						t.Errorf("lines %q", l)
					}
					res := mustApply(t, c, p)
					if res.Created != 13 || len(res.Failed) != 0 {
						t.Errorf("result %s", res.Summary())
					}
					all := liveAll(t, cl)
					if len(all) != 13 {
						t.Fatalf("%d intentions in Consul, want 13", len(all))
					}
					for _, d := range desired {
						l := findLive(all, d.Source, d.Destination)
						if l == nil || string(l.Action) != d.Action || l.Description != d.Description || l.Meta[consulcfg.IntentionMetaKey] != "t" {
							t.Errorf("Consul holds %+v for %s", l, says(d))
						}
					}
					assertConverged(t, c, desired, "t")
					res = mustApply(t, c, p) // the same plan again: nothing to do
					if res.Created+res.Updated+res.Deleted != 0 || res.Keep != 13 {
						t.Errorf("second apply of the same plan: %s", res.Summary())
					}
				}},
				{"stale ours deleted, other cluster's kept", func(t *testing.T) {
					desired := meshIntentions(6)
					mustApply(t, c, mustPlan(t, c, desired, "t"))
					otherID := createRaw(t, cl, "egress-9", "zk-9", "allow", "", map[string]string{consulcfg.IntentionMetaKey: "other"})
					stale := desired[3]
					desired = append(desired[:3:3], desired[4:]...)
					p := mustPlan(t, c, desired, "t")
					if len(p.Delete) != 1 || p.Delete[0].Source != stale.Source || p.Delete[0].Destination != stale.Destination || p.Changes() != 1 || p.Foreign != 1 {
						t.Fatalf("plan %s, delete %+v; want only %s deleted", p.Summary(), p.Delete, says(stale))
					}
					if l := p.Lines(); len(l) != 1 || l[0] != "- "+says(stale) {
						t.Errorf("lines %q", l)
					}
					res := mustApply(t, c, p)
					all := liveAll(t, cl)
					if res.Deleted != 1 || findLive(all, stale.Source, stale.Destination) != nil {
						t.Errorf("%s; stale still there: %v", res.Summary(), findLive(all, stale.Source, stale.Destination) != nil)
					}
					if o := findLive(all, "egress-9", "zk-9"); o == nil || o.ID != otherID {
						t.Errorf("another cluster's intention was touched: %+v", o)
					}
					assertConverged(t, c, desired, "t")
				}},
				{"foreign on a wanted pair: conflict, untouched", func(t *testing.T) {
					desired := meshIntentions(6)
					fAgree := createRaw(t, cl, desired[1].Source, desired[1].Destination, "allow", "hand-made", nil)
					fDeny := createRaw(t, cl, desired[2].Source, desired[2].Destination, "deny", "", nil)
					before := liveAll(t, cl)
					p := mustPlan(t, c, desired, "t")
					if len(p.Conflicts) != 2 || len(p.Create) != 5 || len(p.Opens()) != 0 {
						t.Fatalf("plan %s, conflicts %+v", p.Summary(), p.Conflicts)
					}
					if !p.Conflicts[0].Agrees || p.Conflicts[0].Have.ID != fAgree || p.Conflicts[0].Have.Description != "hand-made" || p.Conflicts[1].Agrees || p.Conflicts[1].Have.ID != fDeny {
						t.Errorf("conflicts %+v", p.Conflicts)
					}
					lines := strings.Join(p.Lines(), "\n")
					for _, w := range []string{
						fmt.Sprintf(`! conflict allow %s -> %s (not mtlsctl's, id %s, "hand-made"): mtlsctl wants the same`, desired[1].Source, desired[1].Destination, fAgree),
						fmt.Sprintf("! conflict deny %s -> %s (not mtlsctl's, id %s): mtlsctl wants allow; left alone, this traffic stays deny", desired[2].Source, desired[2].Destination, fDeny),
					} {
						if !strings.Contains(lines, w) {
							t.Errorf("lines lack %q:\n%s", w, lines)
						}
					}
					res := mustApply(t, c, p)
					if res.Created != 5 || len(res.Conflicts) != 2 {
						t.Errorf("result %s", res.Summary())
					}
					after := liveAll(t, cl)
					for _, b := range before {
						a := findLive(after, b.SourceName, b.DestinationName)
						// Not ModifyIndex: from Consul 1.9 on it is that of the
						// destination's service-intentions entry, which the
						// creates to the same destination move.
						if a == nil || a.ID != b.ID || a.Action != b.Action || a.Description != b.Description || !a.UpdatedAt.Equal(b.UpdatedAt) || len(a.Meta) != 0 {
							t.Errorf("foreign %s was touched: %+v", b.String(), a)
						}
					}
					assertConverged(t, c, desired, "t")
				}},
				{"foreign * -> * allow: apply refuses", func(t *testing.T) {
					createRaw(t, cl, "*", "*", "allow", "open bar", nil)
					desired := meshIntentions(4)
					p := mustPlan(t, c, desired, "t")
					if len(p.Opens()) != 1 || !strings.Contains(p.Lines()[0], "the mesh's default deny is impossible") {
						t.Fatalf("plan %s, lines %q", p.Summary(), p.Lines())
					}
					rec.reset(nil)
					res, err := c.ApplyIntentions(ctx, p)
					if !errors.Is(err, ErrIntentionConflict) || !strings.Contains(err.Error(), `allow * -> * (not mtlsctl's`) {
						t.Fatalf("apply: %v, want ErrIntentionConflict naming the * -> * allow", err)
					}
					if w := rec.reset(nil); len(w) != 0 || res.Created != 0 || len(liveAll(t, cl)) != 1 {
						t.Errorf("apply changed something: %d writes, %s", len(w), res.Summary())
					}
				}},
				{"foreign unrelated: untouched", func(t *testing.T) {
					id := createRaw(t, cl, "web", "db", "allow", "", nil)
					idW := createRaw(t, cl, "*", "db", "deny", "", nil)
					desired := meshIntentions(4)
					p := mustPlan(t, c, desired, "t")
					if p.Foreign != 2 || len(p.Conflicts) != 0 || len(p.Create) != 5 {
						t.Fatalf("plan %s foreign %d", p.Summary(), p.Foreign)
					}
					mustApply(t, c, p)
					if _, err := c.DeleteIntentions(ctx, "t"); err != nil {
						t.Fatal(err)
					}
					all := liveAll(t, cl)
					if len(all) != 2 || findLive(all, "web", "db").ID != id || findLive(all, "*", "db").ID != idW {
						t.Errorf("after apply and delete: %d intentions, want the 2 foreign ones", len(all))
					}
				}},
				{"description and action update", func(t *testing.T) {
					desired := meshIntentions(6)
					extra := map[string]string{consulcfg.IntentionMetaKey: "t", "owner-note": "keep me"}
					id := createRaw(t, cl, desired[1].Source, desired[1].Destination, "allow", "old words", extra)
					p := mustPlan(t, c, desired, "t")
					if len(p.Update) != 1 || p.Update[0].ID != id {
						t.Fatalf("plan %s, update %+v", p.Summary(), p.Update)
					}
					mustApply(t, c, p)
					desired[1].Description = "new words"
					desired[2].Action = "deny"
					p = mustPlan(t, c, desired, "t")
					if len(p.Update) != 2 || p.Changes() != 2 || p.Keep != 5 {
						t.Fatalf("plan %s", p.Summary())
					}
					lines := strings.Join(p.Lines(), "\n")
					for _, w := range []string{
						fmt.Sprintf(`~ %s (description "new words", was "zookeeper -> zookeeper (Apigee table)")`, says(desired[1])),
						fmt.Sprintf("~ %s (was allow)", says(desired[2])),
					} {
						if !strings.Contains(lines, w) {
							t.Errorf("lines lack %q:\n%s", w, lines)
						}
					}
					res := mustApply(t, c, p)
					all := liveAll(t, cl)
					u := findLive(all, desired[1].Source, desired[1].Destination)
					d := findLive(all, desired[2].Source, desired[2].Destination)
					if res.Updated != 2 || u.ID != id || u.Description != "new words" || u.Meta["owner-note"] != "keep me" || d.Action != "deny" {
						t.Errorf("%s; updated %+v and %+v", res.Summary(), u, d)
					}
					assertConverged(t, c, desired, "t")
				}},
				{"DeleteIntentions removes only ours", func(t *testing.T) {
					mine := meshIntentions(8)
					mustApply(t, c, mustPlan(t, c, mine, "t"))
					mustApply(t, c, mustPlan(t, c, []consulcfg.Intention{allow("egress-x", "zk-x", "")}, "other"))
					foreign := createRaw(t, cl, "web", "db", "allow", "", nil)
					rec.reset(nil)
					res, err := c.DeleteIntentions(ctx, "t")
					if err != nil || res.Deleted != 9 || res.Keep != 2 {
						t.Fatalf("delete: %v, %s", err, res.Summary())
					}
					all := liveAll(t, cl)
					if len(all) != 2 || findLive(all, "web", "db").ID != foreign || findLive(all, "egress-x", "zk-x") == nil {
						t.Errorf("%d intentions left, want web -> db and the other cluster's", len(all))
					}
					// The deny goes first: the allows never sit behind it alone.
					ev := rec.reset(nil)
					if len(ev) != 9 {
						t.Fatalf("%d writes, want 9 deletes", len(ev))
					}
					for _, e := range ev[1:] {
						if e.start < ev[0].end {
							t.Errorf("a delete began before the deny's was answered")
						}
					}
					if res, err := c.DeleteIntentions(ctx, "t"); err != nil || res.Deleted != 0 {
						t.Errorf("second delete: %v, %s", err, res.Summary())
					}
				}},
				{"order: allows, then the deny, then deletes", func(t *testing.T) {
					// Stale ones of ours to delete, one allow to update.
					for i := range 5 {
						createRaw(t, cl, fmt.Sprintf("egress-old-%d", i), "zk-old", "allow", "", map[string]string{consulcfg.IntentionMetaKey: "t"})
					}
					desired := meshIntentions(40)
					createRaw(t, cl, desired[7].Source, desired[7].Destination, "deny", desired[7].Description, map[string]string{consulcfg.IntentionMetaKey: "t"})
					p := mustPlan(t, c, desired, "t")
					if len(p.Create) != 40 || len(p.Update) != 1 || len(p.Delete) != 5 {
						t.Fatalf("plan %s", p.Summary())
					}
					rec.reset(nil)
					mustApply(t, c, p)
					ev := rec.reset(nil)
					var allowEnd, denyStart, denyEnd, delStart int
					denyStart, delStart = 1<<30, 1<<30
					for _, e := range ev {
						switch {
						case e.method == http.MethodDelete:
							delStart = min(delStart, e.start)
						case e.action == "allow":
							allowEnd = max(allowEnd, e.end)
						case e.action == "deny":
							denyStart, denyEnd = min(denyStart, e.start), max(denyEnd, e.end)
						}
					}
					if len(ev) != 46 || !(allowEnd < denyStart && denyEnd < delStart) {
						t.Errorf("%d writes; last allow answered at %d, deny sent at %d and answered at %d, first delete at %d", len(ev), allowEnd, denyStart, denyEnd, delStart)
					}
					all := liveAll(t, cl)
					deny := findLive(all, "*", "*")
					for _, i := range all {
						if i.Action == "allow" && i.ModifyIndex > deny.CreateIndex {
							t.Errorf("%s was written after the deny (index %d > %d)", i.String(), i.ModifyIndex, deny.CreateIndex)
						}
					}
					assertConverged(t, c, desired, "t")
				}},
				{"partial failure, then converges", func(t *testing.T) {
					desired := meshIntentions(30)
					p := mustPlan(t, c, desired, "t")
					n := 0
					rec.reset(func(e *wireEvent) bool { n++; return n == 5 || n == 17 })
					res, err := c.ApplyIntentions(ctx, p)
					var f *IntentionFailure
					if err == nil || !errors.As(err, &f) || len(res.Failed) != 2 || res.Created != 28 || res.Skipped != 1 || !strings.Contains(err.Error(), "injected fault") {
						t.Fatalf("apply: %v; %s", err, res.Summary())
					}
					if findLive(liveAll(t, cl), "*", "*") != nil {
						t.Error("the deny was created although allows failed")
					}
					rec.reset(nil)
					res = mustApply(t, c, p)
					if res.Created != 3 || res.Keep != 28 {
						t.Errorf("second apply: %s, want the 2 failed allows and the deny created", res.Summary())
					}
					assertConverged(t, c, desired, "t")
				}},
				{"300 intentions", func(t *testing.T) {
					desired := meshIntentions(299)
					start := time.Now()
					p := mustPlan(t, c, desired, "t")
					planned := time.Since(start)
					res := mustApply(t, c, p)
					applied := time.Since(start) - planned
					if res.Created != 300 {
						t.Errorf("result %s", res.Summary())
					}
					start = time.Now()
					assertConverged(t, c, desired, "t")
					replanned := time.Since(start)
					start = time.Now()
					res, err := c.DeleteIntentions(ctx, "t")
					if err != nil || res.Deleted != 300 {
						t.Errorf("delete: %v, %s", err, res.Summary())
					}
					t.Logf("consul %s, 300 intentions: plan %s, apply %s, re-plan %s, delete all %s", version,
						planned.Round(time.Millisecond), applied.Round(time.Millisecond), replanned.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
				}},
			} {
				wipe(t, cl)
				rec.reset(nil)
				if !t.Run(st.name, st.fn) {
					rec.reset(nil)
				}
			}
		})
	}
}
