package consulapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/consul/api"

	"github.com/mtlsctl/mtlsctl/consulcfg"
	"github.com/mtlsctl/mtlsctl/distribute/transport"
)

// agentCluster is the Cluster of liveTopo in which every node's API client
// is cl (a local agent or a fake) instead of a client through SSH: nothing
// dials the nodes.
func agentCluster(t *testing.T, cl *api.Client) *Cluster {
	t.Helper()
	topo := liveTopo(t)
	p, err := transport.New(topo, transport.Options{HomeDir: t.TempDir(), KnownHostsFiles: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	c := On(p)
	for _, n := range topo.Nodes {
		c.apis[n.Name] = cl
	}
	t.Cleanup(func() { c.Close(); p.Close() })
	return c
}

func allow(src, dst, why string) consulcfg.Intention {
	return consulcfg.Intention{Source: src, Destination: dst, Action: "allow", Description: why}
}

func denyAll() consulcfg.Intention {
	return consulcfg.Intention{Source: "*", Destination: "*", Action: "deny", Description: "mesh default"}
}

// meshIntentions is the `*` -> `*` deny and n allows, each egress-<i> to
// the zk-2181-<j> of the four other nodes of its group of five.
func meshIntentions(n int) []consulcfg.Intention {
	out := []consulcfg.Intention{denyAll()}
	for i := 0; len(out) < n+1; i++ {
		for j := i - i%5; j < i-i%5+5 && len(out) < n+1; j++ {
			if i != j {
				out = append(out, allow(fmt.Sprintf("egress-198-18-%d-%d", i/250, i%250+1), fmt.Sprintf("zk-2181-198-18-%d-%d", j/250, j%250+1), "zookeeper -> zookeeper (Apigee table)"))
			}
		}
	}
	return out
}

func live(id, src, dst, action, owner string) LiveIntention {
	l := LiveIntention{ID: id, Source: src, Destination: dst, Action: action}
	if owner != "" {
		l.Meta = map[string]string{consulcfg.IntentionMetaKey: owner}
	}
	return l
}

func TestPlanIntentionsDiff(t *testing.T) {
	desired := []consulcfg.Intention{denyAll(), allow("a", "b", "r1"), allow("a", "c", "r2"), allow("b", "c", "r3"), allow("c", "d", "r4"), allow("d", "e", "r5")}
	have := []LiveIntention{
		{ID: "1", Source: "*", Destination: "*", Action: "deny", Description: "mesh default", Meta: map[string]string{consulcfg.IntentionMetaKey: "t"}},
		{ID: "2", Source: "a", Destination: "b", Action: "deny", Description: "r1", Meta: map[string]string{consulcfg.IntentionMetaKey: "t"}},
		{ID: "3", Source: "a", Destination: "c", Action: "allow", Description: "old", Meta: map[string]string{consulcfg.IntentionMetaKey: "t"}},
		live("4", "x", "y", "allow", "t"),       // stale, ours
		live("5", "b", "c", "allow", ""),        // foreign, same pair, agrees
		live("6", "c", "d", "deny", "other"),    // another cluster's: foreign
		live("7", "p", "q", "allow", ""),        // foreign, unrelated
		live("8", "p", "r", "allow", "other-t"), // another cluster's, unrelated
	}
	p := planIntentions(desired, have, "t")
	if len(p.Create) != 1 || p.Create[0].Destination != "e" {
		t.Errorf("create %+v, want only d -> e", p.Create)
	}
	if len(p.Update) != 2 || p.Update[0].ID != "2" || p.Update[1].ID != "3" {
		t.Errorf("update %+v, want ids 2 (action) and 3 (description)", p.Update)
	}
	if len(p.Delete) != 1 || p.Delete[0].ID != "4" {
		t.Errorf("delete %+v, want id 4", p.Delete)
	}
	if p.Keep != 1 || p.Foreign != 2 {
		t.Errorf("keep %d foreign %d, want 1 and 2", p.Keep, p.Foreign)
	}
	if len(p.Conflicts) != 2 || !p.Conflicts[0].Agrees || p.Conflicts[1].Agrees || p.Conflicts[1].Opens || len(p.Opens()) != 0 {
		t.Errorf("conflicts %+v, want b -> c agreeing and c -> d not", p.Conflicts)
	}
	lines := strings.Join(p.Lines(), "\n")
	for _, w := range []string{
		"+ allow d -> e",
		"~ allow a -> b (was deny)",
		`~ allow a -> c (description "r2", was "old")`,
		"- allow x -> y",
		"! conflict allow b -> c (not mtlsctl's, id 5): mtlsctl wants the same; left alone",
		`! conflict deny c -> d (mtlsctl's for cluster "other", id 6): mtlsctl wants allow; left alone, this traffic stays deny`,
	} {
		if !strings.Contains(lines, w) {
			t.Errorf("lines lack %q:\n%s", w, lines)
		}
	}
	if !strings.HasPrefix(lines, "! conflict") {
		t.Errorf("conflicts must come first:\n%s", lines)
	}
	if s := p.Summary(); s != "intentions: 1 to create, 2 to update, 1 to delete, 1 unchanged, 2 conflict(s)" {
		t.Errorf("summary %q", s)
	}
}

func TestPlanIntentionsOpenMesh(t *testing.T) {
	p := planIntentions([]consulcfg.Intention{denyAll(), allow("a", "b", "")}, []LiveIntention{
		{ID: "9", Source: "*", Destination: "*", Action: "allow", Description: "open everything"},
	}, "t")
	if len(p.Opens()) != 1 || len(p.Create) != 1 {
		t.Fatalf("plan %+v, want the * -> * allow to open the mesh and a -> b created", p)
	}
	l := p.Lines()[0]
	for _, w := range []string{`! conflict allow * -> * (not mtlsctl's, id 9, "open everything")`, "default deny is impossible", "apply refuses"} {
		if !strings.Contains(l, w) {
			t.Errorf("%q lacks %q", l, w)
		}
	}
}

func TestPlanIntentionsLinesSummarised(t *testing.T) {
	p := planIntentions(meshIntentions(120), nil, "t")
	lines := p.Lines()
	if len(lines) != 51 || lines[50] != "... and 71 more" {
		t.Errorf("%d lines, last %q; want 50 and \"... and 71 more\"", len(lines), lines[len(lines)-1])
	}
	if all := p.LinesMax(0); len(all) != 121 {
		t.Errorf("LinesMax(0) gave %d lines, want 121", len(all))
	}
	if got := planIntentions(nil, nil, "t").Lines(); len(got) != 0 {
		t.Errorf("empty plan has lines %q", got)
	}
}

func TestPlanIntentionsJSON(t *testing.T) {
	p := planIntentions([]consulcfg.Intention{denyAll(), allow("a", "b", "why")}, []LiveIntention{live("1", "*", "*", "allow", ""), live("2", "x", "y", "allow", "t")}, "t")
	p.Via = "s1"
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`"cluster":"t"`, `"create":[{"source":"a","destination":"b","action":"allow","description":"why"}]`, `"opens":true`, `"delete":[{"id":"2"`} {
		if !strings.Contains(string(data), w) {
			t.Errorf("JSON lacks %s: %s", w, data)
		}
	}
	var back IntentionPlan
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Via != "s1" || len(back.Desired) != 2 || len(back.Conflicts) != 1 || !back.Conflicts[0].Opens {
		t.Errorf("round trip lost something: %+v", back)
	}
}

func TestCheckDesired(t *testing.T) {
	for _, tt := range []struct {
		name    string
		desired []consulcfg.Intention
		cluster string
		expect  string
	}{
		{"no cluster", nil, "", "no cluster name"},
		{"twice", []consulcfg.Intention{allow("a", "b", ""), allow("a", "b", "x")}, "t", "a -> b is wanted twice"},
		{"bad action", []consulcfg.Intention{{Source: "a", Destination: "b", Action: "permit"}}, "t", `action "permit"`},
		{"empty name", []consulcfg.Intention{allow("", "b", "")}, "t", "empty source"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkDesired(tt.desired, tt.cluster)
			if err == nil || !strings.Contains(err.Error(), tt.expect) {
				t.Errorf("err %v, want one containing %q", err, tt.expect)
			}
		})
	}
}

// fakeConsul serves the few endpoints the intentions sync uses, from
// memory, failing what fail says.
type fakeConsul struct {
	mu     sync.Mutex
	leader string
	listOK bool
	ixns   []*api.Intention
	nextID int
	fail   func(method string, ixn *api.Intention) bool
	writes []string // "POST allow a -> b", in arrival order
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/v1/status/leader":
		json.NewEncoder(w).Encode(f.leader)
	case r.Method == "GET" && r.URL.Path == "/v1/connect/intentions":
		if !f.listOK {
			http.Error(w, "rpc error: no path to datacenter", 500)
			return
		}
		json.NewEncoder(w).Encode(f.ixns)
	case r.Method == "POST" && r.URL.Path == "/v1/connect/intentions", r.Method == "PUT":
		var ixn api.Intention
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &ixn); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		f.writes = append(f.writes, fmt.Sprintf("%s %s %s -> %s", r.Method, ixn.Action, ixn.SourceName, ixn.DestinationName))
		if f.fail != nil && f.fail(r.Method, &ixn) {
			http.Error(w, "boom", 500)
			return
		}
		f.nextID++
		ixn.ID = fmt.Sprint(f.nextID)
		f.ixns = append(f.ixns, &ixn)
		json.NewEncoder(w).Encode(map[string]string{"ID": ixn.ID})
	case r.Method == "DELETE":
		f.writes = append(f.writes, "DELETE "+strings.TrimPrefix(r.URL.Path, "/v1/connect/intentions/"))
		http.Error(w, "Cannot delete non-existent intention", 500)
	default:
		http.NotFound(w, r)
	}
}

func fakeCluster(t *testing.T, f *fakeConsul) *Cluster {
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cl, err := api.NewClient(&api.Config{Address: strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	return agentCluster(t, cl)
}

func TestApplyIntentionsFailureNamed(t *testing.T) {
	f := &fakeConsul{leader: "127.0.0.1:8300", listOK: true,
		ixns: []*api.Intention{{ID: "old", SourceName: "x", DestinationName: "y", Action: "allow", Meta: map[string]string{consulcfg.IntentionMetaKey: "t"}}},
		fail: func(m string, ixn *api.Intention) bool {
			return m == "POST" && ixn.SourceName == "egress-198-18-0-5" && ixn.DestinationName == "zk-2181-198-18-0-1"
		},
	}
	c := fakeCluster(t, f)
	ctx := context.Background()
	desired := meshIntentions(20)
	p, err := c.PlanIntentions(ctx, desired, "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Create) != 21 || len(p.Delete) != 1 || p.Via != "s1" {
		t.Fatalf("plan %s via %q", p.Summary(), p.Via)
	}
	res, err := c.ApplyIntentions(ctx, p)
	if err == nil {
		t.Fatal("apply succeeded, want the failed create reported")
	}
	var fail *IntentionFailure
	if !errors.As(err, &fail) || fail.Op != "create" || fail.Intention.Source != "egress-198-18-0-5" {
		t.Fatalf("error %v does not name the failed intention", err)
	}
	for _, w := range []string{"create allow egress-198-18-0-5 -> zk-2181-198-18-0-1", "500", "boom", "2 not tried"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if len(res.Failed) != 1 || res.Created != 19 || res.Skipped != 2 || res.Deleted != 0 {
		t.Errorf("result %s, failed %+v; want 19 created, 1 failed, the deny and the delete not tried", res.Summary(), res.Failed)
	}
	for _, w := range f.writes {
		if strings.Contains(w, "deny") || strings.HasPrefix(w, "DELETE") {
			t.Errorf("%q was sent after an allow failed", w)
		}
	}
	// Once the fault is gone, running the same plan again converges; the
	// delete of an intention already gone counts as done.
	f.mu.Lock()
	f.fail, f.writes = nil, nil
	f.mu.Unlock()
	res, err = c.ApplyIntentions(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if res.Created != 2 || res.Deleted != 1 || res.Keep != 19 {
		t.Errorf("second apply: %s; want 2 created (the failed allow and the deny), 1 deleted, 19 kept", res.Summary())
	}
	if n := len(f.writes); n != 3 || f.writes[0] != "POST allow egress-198-18-0-5 -> zk-2181-198-18-0-1" || f.writes[1] != "POST deny * -> *" || f.writes[2] != "DELETE old" {
		t.Errorf("second apply wrote %q", f.writes)
	}
}

func TestIntentionsAgentErrors(t *testing.T) {
	ctx := context.Background()
	c := fakeCluster(t, &fakeConsul{leader: ""})
	if _, err := c.PlanIntentions(ctx, nil, "t"); err == nil || !strings.Contains(err.Error(), "s1: no leader") {
		t.Errorf("no leader: err %v", err)
	}
	c = fakeCluster(t, &fakeConsul{leader: "127.0.0.1:8300"})
	if _, err := c.PlanIntentions(ctx, nil, "t"); err == nil || !strings.Contains(err.Error(), "no path to datacenter") {
		t.Errorf("list failure: err %v", err)
	}
	if _, err := c.ApplyIntentions(ctx, nil); err == nil {
		t.Error("a nil plan was applied")
	}
}

func TestApplyIntentionsRefusesOpenMesh(t *testing.T) {
	f := &fakeConsul{leader: "127.0.0.1:8300", listOK: true,
		ixns: []*api.Intention{{ID: "f", SourceName: "*", DestinationName: "*", Action: "allow"}}}
	c := fakeCluster(t, f)
	res, err := c.ApplyIntentions(context.Background(), &IntentionPlan{Cluster: "t", Desired: meshIntentions(3)})
	if !errors.Is(err, ErrIntentionConflict) || !strings.Contains(err.Error(), "allow * -> *") {
		t.Fatalf("err %v, want ErrIntentionConflict naming the * -> * allow", err)
	}
	if len(f.writes) != 0 || len(res.Conflicts) != 1 {
		t.Errorf("wrote %q with conflicts %+v; want nothing written", f.writes, res.Conflicts)
	}
}
