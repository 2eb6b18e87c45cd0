package distribute

import (
	"slices"
	"testing"

	"github.com/mtlsctl/mtlsctl/consulcfg"
)

func testMesh(digests map[string]string, fw string) *consulcfg.Mesh {
	m := &consulcfg.Mesh{UnitDir: "/etc/systemd/system", FirewallScript: "/var/lib/mtlsctl/firewall.sh", FirewallDigest: fw}
	for _, u := range []string{"mtlsctl-proxy-zk-2181-n1.service", "mtlsctl-proxy-egress-n1.service", "mtlsctl-proxy-cassandra-9042-n1.service"} {
		if d, ok := digests[u]; ok {
			m.Proxies = append(m.Proxies, consulcfg.Proxy{Unit: u, Service: u, Class: u, Digest: d})
		}
	}
	return m
}

func TestPlanMesh(t *testing.T) {
	zk, eg, cs := "mtlsctl-proxy-zk-2181-n1.service", "mtlsctl-proxy-egress-n1.service", "mtlsctl-proxy-cassandra-9042-n1.service"
	all := map[string]string{zk: "a", eg: "b"}
	running := &remoteState{Units: map[string]string{zk: "active", eg: "active"}, Hooked: map[string]bool{"filter": true, "nat": true}}
	for _, tc := range []struct {
		name     string
		old, new *consulcfg.Mesh
		r        *remoteState
		files    []FilePlan
		want     *MeshPlan
	}{
		{name: "first apply: start all, load", old: nil, new: testMesh(all, "f"), r: &remoteState{},
			files: []FilePlan{{Path: "/etc/systemd/system/" + zk, Kind: consulcfg.KindUnit, Action: ActionCreate}},
			want:  &MeshPlan{Start: []string{zk, eg}, DaemonReload: true, Firewall: FirewallLoad, FirewallWhy: "new"}},
		{name: "nothing changed", old: testMesh(all, "f"), new: testMesh(all, "f"), r: running, want: nil},
		{name: "one registration changed", old: testMesh(all, "f"), new: testMesh(map[string]string{zk: "a2", eg: "b"}, "f"), r: running,
			want: &MeshPlan{Restart: []string{zk}}},
		{name: "a stopped proxy is started", old: testMesh(all, "f"), new: testMesh(all, "f"),
			r:    &remoteState{Units: map[string]string{zk: "inactive", eg: "active"}, Hooked: map[string]bool{"filter": true, "nat": true}},
			want: &MeshPlan{Start: []string{zk}}},
		{name: "rules changed", old: testMesh(all, "f"), new: testMesh(all, "g"), r: running,
			want: &MeshPlan{Firewall: FirewallLoad, FirewallWhy: "rules changed"}},
		{name: "chains flushed by someone", old: testMesh(all, "f"), new: testMesh(all, "f"),
			r:    &remoteState{Units: running.Units, Hooked: map[string]bool{"filter": true}},
			want: &MeshPlan{Firewall: FirewallLoad, FirewallWhy: "mtlsctl's chains are not hooked in on the node"}},
		{name: "a listener removed", old: testMesh(map[string]string{zk: "a", eg: "b", cs: "c"}, "f"), new: testMesh(all, "f"), r: running,
			files: []FilePlan{{Path: "/etc/systemd/system/" + cs, Kind: consulcfg.KindUnit, Action: ActionDelete}},
			want:  &MeshPlan{Remove: []string{cs}, DaemonReload: true}},
		{name: "mesh turned off", old: testMesh(all, "f"), new: nil, r: running,
			want: &MeshPlan{Remove: []string{zk, eg}, Firewall: FirewallUnload, FirewallWhy: "the mesh is off for this node", UnloadScript: "/var/lib/mtlsctl/firewall.sh"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := planMesh(tc.old, tc.new, tc.r, tc.files)
			if (got == nil) != (tc.want == nil) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if got == nil {
				return
			}
			if !slices.Equal(got.Start, tc.want.Start) || !slices.Equal(got.Restart, tc.want.Restart) || !slices.Equal(got.Remove, tc.want.Remove) ||
				got.DaemonReload != tc.want.DaemonReload || got.Firewall != tc.want.Firewall || got.FirewallWhy != tc.want.FirewallWhy || got.UnloadScript != tc.want.UnloadScript {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestNewMeshStep(t *testing.T) {
	zk, eg := "mtlsctl-proxy-zk-2181-n1.service", "mtlsctl-proxy-egress-n1.service"
	b := &consulcfg.Bundle{Mesh: testMesh(map[string]string{zk: "a", eg: "b"}, "f")}
	np := &NodePlan{bundle: b, Mesh: &MeshPlan{Start: []string{zk}, Restart: []string{eg}, Firewall: FirewallLoad},
		Files: []FilePlan{{Path: "/etc/systemd/system/old.service", Action: ActionDelete}}}
	st := newMeshStep(np, false)
	if st.Load != "/var/lib/mtlsctl/firewall.sh" || !slices.Equal(st.Units, []string{zk, eg}) || !slices.Equal(st.Restart, []string{eg}) ||
		!slices.Equal(st.Deletes, []string{"/etc/systemd/system/old.service"}) || st.Classes[eg] != eg {
		t.Errorf("step %+v", st)
	}
	if !slices.Equal(st.Sidecars, []string{zk + "-sidecar-proxy", eg + "-sidecar-proxy"}) {
		t.Errorf("sidecars to wait for: %v", st.Sidecars)
	}
	if newMeshStep(&NodePlan{bundle: b}, false) != nil {
		t.Error("a node without mesh work or deletions got a mesh step")
	}
	if st := newMeshStep(&NodePlan{bundle: &consulcfg.Bundle{}}, true); st == nil || !st.Purge {
		t.Error("uninstall must purge even with nothing else to do")
	}
}
