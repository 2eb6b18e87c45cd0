package consulcfg

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestPortReport(t *testing.T) {
	in := twoDC(t)
	delete(in.Ports.Nodes["n4"], "postgres") // missing ports: left out, no panic
	r := PortReport(in.Topology, in.Ports)
	if r.Cluster != "edge-test" || len(r.Nodes) != len(in.Topology.Nodes) {
		t.Fatalf("report: cluster %q, %d nodes", r.Cluster, len(r.Nodes))
	}
	byNode := map[string]NodeReport{}
	for _, n := range r.Nodes {
		byNode[n.Node] = n
	}
	ports := func(n string) map[int]Listener {
		m := map[int]Listener{}
		for _, l := range byNode[n].Listeners {
			m[l.Port] = l
		}
		return m
	}
	n1, n4, m4 := ports("n1"), ports("n4"), ports("m4")
	for _, p := range []int{8300, 8301, 8302, 8500, 8502, 8503, 8600, 10001, 10002, 10003, 10100, 10101, 10200, 10700} {
		if _, ok := n1[p]; !ok {
			t.Errorf("n1 lacks port %d", p)
		}
	}
	if _, ok := n4[8300]; ok {
		t.Error("client n4 reports server RPC")
	}
	if _, ok := n4[10300]; ok {
		t.Error("n4 reports an unassigned postgres port")
	}
	if l := n4[10400]; l.Daemon != "qpid" || l.TargetPort != 5672 || l.IPAddress != "10.0.1.14" {
		t.Errorf("n4 qpid listener %+v", l)
	}
	if l := n4[8502]; l.IPAddress != "127.0.0.1" {
		t.Errorf("client gRPC listens on %s, want loopback", l.IPAddress)
	}
	if l := n1[8500]; l.IPAddress != "127.0.0.1" {
		t.Errorf("HTTP listens on %s, want loopback", l.IPAddress)
	}
	if byNode["m4"].Address != "m4.example.internal" || m4[8301].IPAddress != "m4.example.internal" {
		t.Errorf("template node reported as %q", byNode["m4"].Address)
	}

	var tbl, js, ap bytes.Buffer
	if err := r.WriteTable(&tbl); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(tbl.String(), "\n"); lines != 1+countListeners(r) {
		t.Errorf("table has %d lines", lines)
	}
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Nodes) != len(r.Nodes) {
		t.Errorf("JSON does not round-trip: %v", err)
	}
	if err := r.WriteApigee(&ap); err != nil {
		t.Fatal(err)
	}
	apigee := decodeApigee(t, ap.Bytes())
	h, ok := apigee["10.0.2.13"]
	if !ok || h.DC != "dc-2" {
		t.Fatalf("apigee report lacks host 10.0.2.13 in dc-2: %s", ap.String())
	}
	if got := strings.Join(slices.Sorted(maps.Keys(h.Daemons)), ","); got != "cassandra-ingress,consul-server,egress,postgres-ingress,qpid-ingress,zookeeper-ingress" {
		t.Errorf("m3 daemons %s", got)
	}
	cs := h.Daemons["consul-server"]
	if cs.Ingress == nil || *cs.Ingress || cs.Name != "consul-server" || len(cs.Listeners) != 7 || cs.Listeners[0].Port != 8300 || cs.Listeners[0].Purpose == "" {
		t.Errorf("consul-server daemon %+v", cs)
	}
	if zk := h.Daemons["zookeeper-ingress"]; zk.Ingress == nil || !*zk.Ingress || len(zk.Listeners) != 3 || zk.Name != "zookeeper" {
		t.Errorf("zookeeper-ingress daemon %+v", zk)
	}
	if eg := h.Daemons["egress"]; eg.Ingress == nil || *eg.Ingress || eg.Name != EgressService {
		t.Errorf("egress daemon %+v", eg)
	}
	if _, ok := apigee["10.0.1.14"].Daemons["consul-agent"]; !ok {
		t.Errorf("client n4 has no consul-agent daemon")
	}
}

// apigeeReport is the shape of Apigee's `apigee-mtls report`.
type apigeeReport map[string]struct {
	DC      string `json:"datacenter_member"`
	Daemons map[string]struct {
		Ingress   *bool  `json:"ingress"`
		Name      string `json:"name"`
		Listeners []struct {
			Purpose string `json:"purpose"`
			IP      string `json:"ip_address"`
			Port    int    `json:"port"`
		} `json:"listeners"`
	} `json:"daemons"`
}

func decodeApigee(t *testing.T, b []byte) apigeeReport {
	t.Helper()
	var r apigeeReport
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("apigee report: %v\n%s", err, b)
	}
	for ip, h := range r {
		for k, d := range h.Daemons {
			if d.Ingress == nil || d.Name == "" || len(d.Listeners) == 0 {
				t.Errorf("%s: daemon %s lacks ingress, name or listeners", ip, k)
			}
		}
	}
	return r
}

func countListeners(r Report) int {
	n := 0
	for _, x := range r.Nodes {
		n += len(x.Listeners)
	}
	return n
}

func TestPortsFileIsNodeReport(t *testing.T) {
	in := fiveNode(t)
	b, err := RenderNode(in, "n2")
	if err != nil {
		t.Fatal(err)
	}
	var got NodeReport
	if err := json.Unmarshal(b.File("/var/lib/mtlsctl/ports.json").Content, &got); err != nil {
		t.Fatal(err)
	}
	want := PortReport(in.Topology, in.Ports).Nodes[1]
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("ports.json\n%s\nwant\n%s", g, w)
	}
}
