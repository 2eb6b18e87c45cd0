package consulcfg

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// servicesOf decodes a bundle's services file.
func servicesOf(t *testing.T, b *Bundle) []serviceDef {
	t.Helper()
	f := b.File("/etc/consul.d/" + ServicesName)
	if f == nil {
		t.Fatalf("%s: no services file", b.Node)
	}
	var sf servicesFile
	if err := json.Unmarshal(f.Content, &sf); err != nil {
		t.Fatalf("%s: services file: %v", b.Node, err)
	}
	return sf.Services
}

func renderAll(t *testing.T, in Input) map[string]*Bundle {
	t.Helper()
	bundles, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*Bundle{}
	for i := range bundles {
		out[bundles[i].Node] = &bundles[i]
	}
	return out
}

func TestMeshServicesAndNames(t *testing.T) {
	bs := renderAll(t, fiveNodeMesh(t))
	n2 := bs["n2"]
	svcs := servicesOf(t, n2)
	var ids []string
	for _, s := range svcs {
		ids = append(ids, s.ID)
		if s.Name != s.ID {
			t.Errorf("%s: name %s, want the ID (an upstream by name must reach one node)", s.ID, s.Name)
		}
	}
	want := "zk-2181-10-0-0-12 zk-2888-10-0-0-12 zk-3888-10-0-0-12 cassandra-9042-10-0-0-12 cassandra-9160-10-0-0-12 " +
		"mp-8082-10-0-0-12 mp-4528-10-0-0-12 router-8081-10-0-0-12 router-4527-10-0-0-12 egress-10-0-0-12"
	if got := strings.Join(ids, " "); got != want {
		t.Errorf("n2 services\n got %s\nwant %s", got, want)
	}

	// Ingress: port = component port; sidecar on the node address at the
	// proxy port, delivering to 127.0.0.1:<component port>, with its own
	// check on the node address.
	zk := svcs[1]
	sc := zk.Connect.SidecarService
	if zk.Port != 2888 || sc == nil || sc.Address != "10.0.0.12" || sc.Port != 10005 ||
		sc.Proxy.LocalServiceAddress != "127.0.0.1" || sc.Proxy.LocalServicePort != 2888 || len(sc.Proxy.Upstreams) != 0 {
		t.Fatalf("zk-2888 on n2: %+v %+v", zk, sc)
	}
	// No TCP check: it would open an empty connection to the component
	// every interval (the proxy dials it on accept).
	if len(sc.Checks) != 1 || sc.Checks[0].AliasService != "zk-2888-10-0-0-12" || sc.Checks[0].TCP != "" || sc.Checks[0].Status != "passing" || sc.Checks[0].Name == "" {
		t.Errorf("zk-2888 check %+v", sc.Checks)
	}
	if zk.Connect.Native {
		t.Error("ingress service is Connect-native")
	}

	// Egress: local only, local service port 1, upstreams to every other
	// node's listeners.
	eg := svcs[len(svcs)-1]
	sc = eg.Connect.SidecarService
	if eg.Port != 10701 || sc.Address != "127.0.0.1" || sc.Port != 10701 || sc.Proxy.LocalServicePort != 1 {
		t.Errorf("egress on n2: port %d sidecar %s:%d local port %d", eg.Port, sc.Address, sc.Port, sc.Proxy.LocalServicePort)
	}
	if len(sc.Checks) != 1 || sc.Checks[0].AliasService != "egress-10-0-0-12" || sc.Checks[0].TCP != "" {
		t.Errorf("egress check %+v", sc.Checks)
	}
	// n1: zk 3, cass 2, ldap 1; n3: 3+2+2+2; n4, n5: pg 2 + qpid 2.
	if got := len(sc.Proxy.Upstreams); got != 6+9+4+4 {
		t.Errorf("n2 has %d upstreams, want 23", got)
	}
	for _, u := range sc.Proxy.Upstreams {
		if strings.HasSuffix(u.DestinationName, "-10-0-0-12") {
			t.Errorf("n2 has an upstream to itself: %s", u.DestinationName)
		}
		if u.LocalBindPort != 10701 || u.Datacenter != "" || !strings.HasPrefix(u.LocalBindAddress, "127.77.") {
			t.Errorf("upstream %+v", u)
		}
	}

	// Bundle.Mesh lists every proxy, ingress in listener order, egress last.
	m := n2.Mesh
	if m == nil || m.UnitDir != "/etc/systemd/system" || m.FirewallScript != "/var/lib/mtlsctl/firewall.sh" || len(m.FirewallDigest) != 16 {
		t.Fatalf("n2 mesh %+v", m)
	}
	if len(m.Proxies) != len(svcs) {
		t.Fatalf("%d proxies for %d services", len(m.Proxies), len(svcs))
	}
	for i, p := range m.Proxies {
		if p.Service != svcs[i].ID || p.Unit != "mtlsctl-proxy-"+p.Service+".service" || len(p.Digest) != 16 {
			t.Errorf("proxy %d: %+v", i, p)
		}
		if f := n2.File("/etc/systemd/system/" + p.Unit); f == nil || f.Kind != KindUnit || f.Mode != 0o644 {
			t.Errorf("%s: unit file %+v", p.Unit, f)
		}
	}
	if p := m.Proxies[1]; p.Class != "zk-2888" || !p.Ingress || p.Listen != "10.0.0.12:10005" || p.Target != "127.0.0.1:2888" || p.Upstreams != 0 {
		t.Errorf("zk-2888 proxy %+v", p)
	}
	if p := m.Proxies[6]; p.Class != "mp-4528" || p.Listen != "10.0.0.12:10501" || p.Target != "127.0.0.1:4528" {
		t.Errorf("mp-4528 proxy %+v", p)
	}
	if p := m.Proxies[len(m.Proxies)-1]; p.Class != "egress" || p.Ingress || p.Listen != "127.0.0.1:10701" || p.Target != "" || p.Upstreams != 23 {
		t.Errorf("egress proxy %+v", p)
	}
}

// TestMeshPostgresReservedPort: Postgres gets three ports, the mesh uses two.
func TestMeshPostgresReservedPort(t *testing.T) {
	bs := renderAll(t, fiveNodeMesh(t))
	var got []string
	for _, p := range bs["n5"].Mesh.Proxies {
		got = append(got, p.Service+"@"+p.Listen)
	}
	want := "postgres-5432-10-0-0-15@10.0.0.15:10303 postgres-8084-10-0-0-15@10.0.0.15:10304 " +
		"qpid-5672-10-0-0-15@10.0.0.15:10402 qpid-8083-10-0-0-15@10.0.0.15:10403 egress-10-0-0-15@127.0.0.1:10704"
	if strings.Join(got, " ") != want {
		t.Errorf("n5 proxies\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	if fw := string(bs["n5"].File("/var/lib/mtlsctl/firewall.rules").Content); strings.Contains(fw, "--dport 10305 ") {
		t.Error("the reserved postgres port is opened")
	}
}

func TestMeshUnits(t *testing.T) {
	in := fiveNodeMesh(t)
	in.Topology.Cluster.Mesh.ConsulBinary = "/opt/consul/bin/consul"
	in.Topology.Cluster.Mesh.UnitDir = "/usr/local/lib/systemd/system"
	b, err := RenderNode(in, "n4")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b.File("/usr/local/lib/systemd/system/mtlsctl-proxy-qpid-5672-10-0-0-14.service").Content)
	for _, line := range []string{
		"[Unit]",
		"After=network-online.target consul.service mtlsctl-firewall.service",
		"Wants=network-online.target",
		"[Service]",
		"User=nobody",
		"ExecStart=/opt/consul/bin/consul connect proxy -sidecar-for qpid-5672-10-0-0-14 -http-addr 127.0.0.1:8500 -log-level info",
		"Restart=always",
		"RestartSec=2",
		"StartLimitInterval=0",
		"NoNewPrivileges=yes",
		"[Install]",
		"WantedBy=multi-user.target",
	} {
		if !slices.Contains(strings.Split(unit, "\n"), line) {
			t.Errorf("proxy unit lacks %q:\n%s", line, unit)
		}
	}
	for _, bad := range []string{"Requires=", "BindsTo=", "PartOf="} {
		if strings.Contains(unit, bad) {
			t.Errorf("proxy unit has %s: an agent restart would stop the proxy", bad)
		}
	}
	fw := b.File("/usr/local/lib/systemd/system/" + FirewallUnit)
	if fw == nil || fw.Kind != KindUnit {
		t.Fatalf("no firewall unit")
	}
	for _, line := range []string{
		"Type=oneshot", "RemainAfterExit=yes", "ExecStart=/bin/sh /var/lib/mtlsctl/firewall.sh load",
		"After=iptables.service netfilter-persistent.service firewalld.service network-pre.target",
		"Before=network-online.target consul.service", "WantedBy=multi-user.target",
	} {
		if !slices.Contains(strings.Split(string(fw.Content), "\n"), line) {
			t.Errorf("firewall unit lacks %q:\n%s", line, fw.Content)
		}
	}
	if strings.Contains(string(fw.Content), "ExecStop") {
		t.Error("firewall unit has ExecStop: stopping it would open the node")
	}
	if b.Mesh.UnitDir != "/usr/local/lib/systemd/system" {
		t.Errorf("Mesh.UnitDir %s", b.Mesh.UnitDir)
	}

	// The proxy user defaults to consul.user, else nobody.
	for _, tc := range []struct{ consulUser, proxyUser, want string }{
		{"consul", "", "consul"}, {"", "", "nobody"}, {"consul", "proxy", "proxy"},
	} {
		in := fiveNodeMesh(t)
		in.Topology.Cluster.Consul.User = tc.consulUser
		in.Topology.Cluster.Mesh = inventory.Mesh{Enabled: true, ProxyUser: tc.proxyUser}
		b, err := RenderNode(in, "n4")
		if err != nil {
			t.Fatal(err)
		}
		unit := string(b.File("/etc/systemd/system/mtlsctl-proxy-egress-10-0-0-14.service").Content)
		if !strings.Contains(unit, "\nUser="+tc.want+"\n") || !strings.Contains(unit, "ExecStart=/usr/bin/consul ") {
			t.Errorf("consul.user %q proxy_user %q: want User=%s and the default binary:\n%s", tc.consulUser, tc.proxyUser, tc.want, unit)
		}
	}
}

func TestMeshFiles(t *testing.T) {
	b, err := RenderNode(fiveNodeMesh(t), "n1")
	if err != nil {
		t.Fatal(err)
	}
	units := 0
	for _, f := range b.Files {
		if f.Kind == KindUnit {
			units++
			if f.Mode != 0o644 || f.Owner != "" || !strings.HasPrefix(f.Path, "/etc/systemd/system/mtlsctl-") {
				t.Errorf("unit %s mode %v owner %q", f.Path, f.Mode, f.Owner)
			}
		}
	}
	if units != len(b.Mesh.Proxies)+1 {
		t.Errorf("%d units for %d proxies and the firewall", units, len(b.Mesh.Proxies))
	}
	sh := b.File("/var/lib/mtlsctl/firewall.sh")
	if sh == nil || sh.Mode != 0o644 || sh.Kind != KindOther || !strings.HasPrefix(string(sh.Content), "#!/bin/sh\n") {
		t.Fatalf("firewall.sh %+v", sh)
	}
	rules := b.File("/var/lib/mtlsctl/firewall.rules")
	if want := digest(rules.Content, sh.Content); b.Mesh.FirewallDigest != want {
		t.Errorf("FirewallDigest %s, want %s", b.Mesh.FirewallDigest, want)
	}

	// Mesh disabled: no units, no script, no nat, no Mesh.
	b, err = RenderNode(fiveNode(t), "n1")
	if err != nil {
		t.Fatal(err)
	}
	if b.Mesh != nil || b.File("/var/lib/mtlsctl/firewall.sh") != nil || strings.Contains(string(b.File("/var/lib/mtlsctl/firewall.rules").Content), "*nat") {
		t.Error("disabled mesh renders mesh parts")
	}
	for _, f := range b.Files {
		if f.Kind == KindUnit {
			t.Errorf("disabled mesh renders unit %s", f.Path)
		}
	}
}

func TestMeshLoopbackAllocation(t *testing.T) {
	in := fiveNodeMesh(t)
	mt := newMeshTopology(in.Topology)
	ups, err := mt.upstreams(in.Topology.Node("n4"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range ups {
		got = append(got, fmt.Sprintf("%s:%d=%s", u.Dest, u.Target, u.Bind))
	}
	want := []string{
		"10.0.0.11:2181=127.77.0.1", "10.0.0.11:2888=127.77.0.2", "10.0.0.11:3888=127.77.0.3",
		"10.0.0.11:9042=127.77.0.4", "10.0.0.11:9160=127.77.0.5", "10.0.0.11:10389=127.77.0.6",
		"10.0.0.12:2181=127.77.0.7", "10.0.0.12:2888=127.77.0.8", "10.0.0.12:3888=127.77.0.9",
		"10.0.0.12:4527=127.77.0.10", "10.0.0.12:4528=127.77.0.11", "10.0.0.12:8081=127.77.0.12",
		"10.0.0.12:8082=127.77.0.13", "10.0.0.12:9042=127.77.0.14", "10.0.0.12:9160=127.77.0.15",
		"10.0.0.13:2181=127.77.0.16", "10.0.0.13:2888=127.77.0.17", "10.0.0.13:3888=127.77.0.18",
		"10.0.0.13:4527=127.77.0.19", "10.0.0.13:4528=127.77.0.20", "10.0.0.13:8081=127.77.0.21",
		"10.0.0.13:8082=127.77.0.22", "10.0.0.13:9042=127.77.0.23", "10.0.0.13:9160=127.77.0.24",
		"10.0.0.15:5432=127.77.0.25", "10.0.0.15:5672=127.77.0.26", "10.0.0.15:8083=127.77.0.27",
		"10.0.0.15:8084=127.77.0.28",
	}
	if !slices.Equal(got, want) {
		t.Errorf("n4 upstreams\n got %v\nwant %v", got, want)
	}

	t.Run("numeric address order and the 256th", func(t *testing.T) {
		// 60 ZooKeeper+Cassandra nodes (5 listeners each) from 10.0.0.2 to
		// 10.0.0.61, listed in reverse so file order is not address order;
		// 10.0.0.10 must come after 10.0.0.9 (numeric, not textual).
		var nodes []testNode
		for i := 61; i >= 2; i-- {
			nodes = append(nodes, node("z"+strconv.Itoa(i), "10.0.0."+strconv.Itoa(i), zk, cass))
		}
		top := newTopology(t, "1.6.2", testDC{name: "dc-1", nodes: nodes})
		ups, err := newMeshTopology(top).upstreams(top.Node("z2"))
		if err != nil {
			t.Fatal(err)
		}
		if len(ups) != 59*5 {
			t.Fatalf("%d upstreams, want %d", len(ups), 59*5)
		}
		seen := map[netip.Addr]bool{}
		for i, u := range ups {
			want := netip.AddrFrom4([4]byte{127, 77, byte((i + 1) >> 8), byte(i + 1)})
			if u.Bind != want || seen[u.Bind] {
				t.Fatalf("upstream %d bound to %s, want %s", i+1, u.Bind, want)
			}
			seen[u.Bind] = true
			if i > 0 && ups[i-1].Dest.Compare(u.Dest) > 0 {
				t.Fatalf("upstream %d (%s) after %s", i+1, u.Dest, ups[i-1].Dest)
			}
		}
		if u := ups[255]; u.Bind.String() != "127.77.1.0" {
			t.Errorf("the 256th upstream binds %s, want 127.77.1.0", u.Bind)
		}
		if u := ups[35]; u.Dest.String() != "10.0.0.10" || u.Target != 2181 {
			t.Errorf("the 36th upstream is %s:%d, want 10.0.0.10:2181", u.Dest, u.Target)
		}
	})

	t.Run("127.77.0.0/16 full", func(t *testing.T) {
		all := []inventory.Component{zk, cass, ldap, pg, qpid, mp, rt} // 14 listeners a node
		var nodes []testNode
		for i := range 4683 {
			nodes = append(nodes, node("x"+strconv.Itoa(i), fmt.Sprintf("10.1.%d.%d", i/256, i%256), all...))
		}
		top := newTopology(t, "1.6.2", testDC{name: "dc-1", nodes: nodes})
		_, err := newMeshTopology(top).upstreams(top.Nodes[0])
		if !errors.Is(err, ErrBadTopology) || !strings.Contains(err.Error(), "127.77.0.0/16") {
			t.Errorf("error %v, want ErrBadTopology about 127.77.0.0/16", err)
		}
	})

	t.Run("multi-DC upstreams name the datacenter", func(t *testing.T) {
		b, err := RenderNode(twoDCMesh(t), "n1")
		if err != nil {
			t.Fatal(err)
		}
		svcs := servicesOf(t, &b)
		dcs := map[string]int{}
		for _, u := range svcs[len(svcs)-1].Connect.SidecarService.Proxy.Upstreams {
			dcs[u.Datacenter]++
			if (u.Datacenter == "dc-2") != strings.Contains(u.DestinationName, "-10-0-2-") {
				t.Errorf("upstream %+v in the wrong datacenter", u)
			}
		}
		// dc-1: n2 and n3 (9 listeners each); dc-2: m1 6, m2 and m3 9 each.
		if dcs[""] != 0 || dcs["dc-1"] != 9+9 || dcs["dc-2"] != 6+9+9 {
			t.Errorf("upstreams by datacenter %v", dcs)
		}
	})
}

func TestMeshDNAT(t *testing.T) {
	in := fiveNodeMesh(t)
	bs := renderAll(t, in)
	fw := string(bs["n4"].File("/var/lib/mtlsctl/firewall.rules").Content)
	for _, line := range []string{
		"*nat\n:MTLSCTL-EGRESS - [0:0]\n",
		`-A MTLSCTL-EGRESS -d 10.0.0.11/32 -p tcp -m tcp --dport 2181 -m comment --comment "zk-2181-10-0-0-11" -j DNAT --to-destination 127.77.0.1:10703` + "\n",
		`-A MTLSCTL-EGRESS -d 10.0.0.15/32 -p tcp -m tcp --dport 8084 -m comment --comment "postgres-8084-10-0-0-15" -j DNAT --to-destination 127.77.0.28:10703` + "\nCOMMIT\n",
		// filter: the node's own component ports are loopback only, its
		// proxy ports open to members, its egress port not opened.
		`-A MTLSCTL-INPUT -p tcp -m tcp --dport 5432 -m comment --comment "postgres-5432-10-0-0-14: loopback only" -j DROP` + "\n",
		`-A MTLSCTL-INPUT -p tcp -m tcp --dport 10300 -m comment --comment "postgres-5432-10-0-0-14" -j MTLSCTL-MEMBERS` + "\n",
	} {
		if !strings.Contains(fw, line) {
			t.Errorf("n4 rules lack %q", line)
		}
	}
	if strings.Contains(fw, "--dport 10703 ") {
		t.Error("the egress port is opened to members")
	}
	if strings.Contains(fw, "-d 10.0.0.14/32") {
		t.Error("a DNAT rule for the node's own address")
	}
	// One DNAT per upstream, each to its own loopback address.
	to := map[string]bool{}
	for _, line := range strings.Split(fw, "\n") {
		if !strings.HasPrefix(line, "-A MTLSCTL-EGRESS ") {
			continue
		}
		_, dst, ok := strings.Cut(line, " -j DNAT --to-destination ")
		if !ok || to[dst] {
			t.Errorf("bad or repeated DNAT: %q", line)
		}
		to[dst] = true
	}
	if len(to) != bs["n4"].Mesh.Proxies[len(bs["n4"].Mesh.Proxies)-1].Upstreams {
		t.Errorf("%d DNAT rules for %d upstreams", len(to), bs["n4"].Mesh.Proxies[4].Upstreams)
	}
	// Only mtlsctl's chains, in both tables.
	for _, line := range strings.Split(strings.TrimSpace(fw), "\n") {
		switch {
		case strings.HasPrefix(line, "#"), line == "*filter", line == "*nat", line == "COMMIT",
			line == ":MTLSCTL-INPUT - [0:0]", line == ":MTLSCTL-MEMBERS - [0:0]", line == ":MTLSCTL-EGRESS - [0:0]",
			strings.HasPrefix(line, "-A MTLSCTL-INPUT "), strings.HasPrefix(line, "-A MTLSCTL-MEMBERS "),
			strings.HasPrefix(line, "-A MTLSCTL-EGRESS "):
		default:
			t.Errorf("line touches more than mtlsctl's chains: %q", line)
		}
	}
}

// TestMeshSharedEgressPort: Apigee advises egress (and LDAP) min = max, so
// every node gets the same egress port E; the upstreams still never
// collide, each on its own loopback address.
func TestMeshSharedEgressPort(t *testing.T) {
	in := fiveNodeMesh(t)
	for _, ports := range in.Ports.Nodes {
		ports[inventory.Egress] = []int{10700}
		if _, ok := ports["openldap"]; ok {
			ports["openldap"] = []int{10200}
		}
	}
	in.Topology.Node("n4").Components = append(in.Topology.Node("n4").Components, ldap)
	in.Ports.Nodes["n4"]["openldap"] = []int{10200}
	bs := renderAll(t, in)
	for name, b := range bs {
		svcs := servicesOf(t, b)
		sc := svcs[len(svcs)-1].Connect.SidecarService
		if sc.Port != 10700 {
			t.Errorf("%s: egress on %d", name, sc.Port)
		}
		binds := map[string]bool{sc.Address + ":10700": true}
		for _, u := range sc.Proxy.Upstreams {
			addr := u.LocalBindAddress + ":" + strconv.Itoa(u.LocalBindPort)
			if u.LocalBindPort != 10700 || binds[addr] || u.LocalBindAddress == "0.0.0.0" {
				t.Errorf("%s: upstream binds %s twice or off the shared port", name, addr)
			}
			binds[addr] = true
		}
		fw := string(b.File("/var/lib/mtlsctl/firewall.rules").Content)
		if n := strings.Count(fw, " -j DNAT --to-destination "); n != strings.Count(fw, ":10700\n") || n != len(sc.Proxy.Upstreams) {
			t.Errorf("%s: %d DNAT rules, not all to port 10700", name, n)
		}
		if p := b.Mesh.Proxies[len(b.Mesh.Proxies)-1]; p.Listen != "127.0.0.1:10700" {
			t.Errorf("%s: egress listens on %s", name, p.Listen)
		}
	}
	// Both LDAP nodes' ingress on the shared 10200, each on its own address.
	for _, n := range []string{"n1", "n4"} {
		addr := in.Topology.Node(n).Address
		if !slices.ContainsFunc(bs[n].Mesh.Proxies, func(p Proxy) bool { return p.Class == "ldap-10389" && p.Listen == addr+":10200" }) {
			t.Errorf("%s: no ldap proxy on %s:10200", n, addr)
		}
	}
}

func TestMeshRenderErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*Input)
		want   error
		text   string
	}{
		{"template address", func(in *Input) { in.Topology.Node("n3").Address = `{{ GetPrivateIP }}` }, ErrBadTopology, "mesh: {enabled: false}"},
		{"IPv6 address", func(in *Input) { in.Topology.Node("n5").Address = "fd00::15" }, ErrBadTopology, "node n5:"},
		{"relative consul binary", func(in *Input) { in.Topology.Cluster.Mesh.ConsulBinary = "consul" }, ErrBadTopology, "mesh.consul_binary"},
		{"binary with a space", func(in *Input) { in.Topology.Cluster.Mesh.ConsulBinary = "/opt/my consul/consul" }, ErrBadTopology, "mesh.consul_binary"},
		{"unit dir with %", func(in *Input) { in.Topology.Cluster.Mesh.UnitDir = "/etc/%n" }, ErrBadTopology, "mesh.unit_dir"},
		{"state dir with $", func(in *Input) { in.Topology.Cluster.NodeStateDir = "/var/lib/$x" }, ErrBadTopology, "node_state_dir"},
		{"proxy user", func(in *Input) { in.Topology.Cluster.Mesh.ProxyUser = "a b" }, ErrBadTopology, "mesh.proxy_user"},
		{"proxy port is a component port", func(in *Input) { in.Ports.Nodes["n1"]["openldap"] = []int{2181} }, ErrNoPorts, "component port of zk-2181-10-0-0-11"},
		{"postgres short", func(in *Input) { in.Ports.Nodes["n4"]["postgres"] = []int{10300} }, ErrNoPorts, "postgres has 1 ports, needs 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := fiveNodeMesh(t)
			tc.modify(&in)
			_, err := Render(in)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %v, want %v saying %q", err, tc.want, tc.text)
			}
			if _, ierr := Intentions(in.Topology, in.Ports); strings.HasPrefix(tc.name, "template") && !errors.Is(ierr, ErrBadTopology) {
				t.Errorf("Intentions: %v, want ErrBadTopology", ierr)
			}
		})
	}
}

// TestMeshDigest: a proxy's digest changes exactly when its unit or its
// registration does, so apply restarts only that proxy.
func TestMeshDigest(t *testing.T) {
	digests := func(in Input) (map[string]string, map[string]string) {
		px, fw := map[string]string{}, map[string]string{}
		for _, b := range renderAll(t, in) {
			for _, p := range b.Mesh.Proxies {
				px[p.Service] = p.Digest
			}
			fw[b.Node] = b.Mesh.FirewallDigest
		}
		return px, fw
	}
	changed := func(a, b map[string]string) []string {
		var out []string
		for k, v := range b {
			if a[k] != v {
				out = append(out, k)
			}
		}
		slices.Sort(out)
		return out
	}
	basePx, baseFw := digests(fiveNodeMesh(t))
	if again, _ := digests(fiveNodeMesh(t)); len(changed(basePx, again)) != 0 {
		t.Fatal("digests are not deterministic")
	}

	t.Run("one proxy port", func(t *testing.T) {
		in := fiveNodeMesh(t)
		in.Ports.Nodes["n4"]["qpid"][1] = 10450
		px, fw := digests(in)
		if got := changed(basePx, px); !slices.Equal(got, []string{"qpid-8083-10-0-0-14"}) {
			t.Errorf("changed proxies %v, want only qpid-8083-10-0-0-14", got)
		}
		if got := changed(baseFw, fw); !slices.Equal(got, []string{"n4"}) {
			t.Errorf("changed firewalls %v, want n4's (its proxy port is opened)", got)
		}
	})
	t.Run("a new node", func(t *testing.T) {
		in := fiveNodeMesh(t)
		n := &inventory.Node{Name: "n6", Address: "10.0.0.16", Components: []inventory.Component{rt, mp}, Datacenter: "dc-1"}
		in.Topology.Nodes = append(in.Topology.Nodes, n)
		in.Topology.Cluster.Datacenters[0].Nodes = append(in.Topology.Cluster.Datacenters[0].Nodes, n)
		in.Ports.Nodes["n6"] = map[string][]int{"router": {10604, 10605}, "message-processor": {10504, 10505}, inventory.Egress: {10705}}
		in.Leaves["n6"] = in.Leaves["n5"]
		px, _ := digests(in)
		var old []string
		for _, s := range changed(basePx, px) {
			if _, ok := basePx[s]; ok {
				old = append(old, s)
			}
		}
		want := []string{"egress-10-0-0-11", "egress-10-0-0-12", "egress-10-0-0-13", "egress-10-0-0-14", "egress-10-0-0-15"}
		if !slices.Equal(old, want) {
			t.Errorf("changed proxies %v, want only the egress ones (they gain upstreams)", old)
		}
		if got := len(px) - len(basePx); got != 5 {
			t.Errorf("%d new proxies, want n6's 5", got)
		}
	})
	t.Run("consul binary", func(t *testing.T) {
		in := fiveNodeMesh(t)
		in.Topology.Cluster.Mesh.ConsulBinary = "/usr/local/bin/consul"
		px, fw := digests(in)
		if got := changed(basePx, px); len(got) != len(basePx) {
			t.Errorf("%d of %d proxies changed: every unit did", len(got), len(basePx))
		}
		if got := changed(baseFw, fw); len(got) != 0 {
			t.Errorf("firewalls changed: %v", got)
		}
	})
}

func TestIntentions(t *testing.T) {
	in := fiveNodeMesh(t)
	in.Topology.Cluster.Mesh.Allow = []inventory.AllowRule{{From: rt, To: pg, Line: 7}}
	plain, err := Intentions(fiveNodeMesh(t).Topology, in.Ports)
	if err != nil {
		t.Fatal(err)
	}
	tdc := twoDCMesh(t)
	twoDC, err := Intentions(tdc.Topology, tdc.Ports)
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := Intentions(in.Topology, in.Ports)
	if err != nil {
		t.Fatal(err)
	}
	find := func(ints []Intention, src, dst string) *Intention {
		for i := range ints {
			if ints[i].Source == src && ints[i].Destination == dst {
				return &ints[i]
			}
		}
		return nil
	}
	if plain[0] != (Intention{"*", "*", "deny", plain[0].Description}) || plain[0].Description == "" {
		t.Errorf("first intention %+v, want * -> * deny", plain[0])
	}
	if !slices.IsSortedFunc(plain, func(a, b Intention) int {
		return strings.Compare(a.Source+"\x00"+a.Destination, b.Source+"\x00"+b.Destination)
	}) {
		t.Error("intentions not sorted by (source, destination)")
	}
	for _, tc := range []struct {
		name     string
		ints     []Intention
		src, dst string
		allow    bool
		why      string
	}{
		{"management-server to zookeeper", plain, "egress-10-0-0-11", "zk-2181-10-0-0-12", true, "management-server -> zookeeper (Apigee table)"},
		{"management-server to postgres", plain, "egress-10-0-0-11", "postgres-8084-10-0-0-14", true, "management-server -> postgres"},
		{"router to qpid", plain, "egress-10-0-0-12", "qpid-5672-10-0-0-15", true, "router -> qpid"},
		{"router to postgres denied", plain, "egress-10-0-0-12", "postgres-5432-10-0-0-14", false, ""},
		{"postgres to qpid denied", plain, "egress-10-0-0-14", "qpid-5672-10-0-0-15", false, ""},
		{"postgres to postgres", plain, "egress-10-0-0-14", "postgres-5432-10-0-0-15", true, "postgres -> postgres"},
		{"zookeeper to own node not listed", plain, "egress-10-0-0-11", "zk-2181-10-0-0-11", false, ""},
		{"router node to other zookeeper", plain, "egress-10-0-0-13", "zk-3888-10-0-0-11", true, "router -> zookeeper (Apigee table)"},
		{"zookeeper to other zookeeper", twoDC, "egress-10-0-1-13", "zk-3888-10-0-2-11", true, "zookeeper -> zookeeper (Apigee table)"},
		{"cassandra to other cassandra", twoDC, "egress-10-0-2-13", "cassandra-9042-10-0-1-11", true, "zookeeper -> cassandra"},
		{"qpid node to zookeeper", twoDC, "egress-10-0-2-13", "zk-2181-10-0-2-12", true, "zookeeper -> zookeeper"},
		{"zookeeper node to router denied", twoDC, "egress-10-0-1-13", "router-8081-10-0-1-12", false, ""},
		{"nothing to an egress service", plain, "egress-10-0-0-11", "egress-10-0-0-12", false, ""},
		{"qpid node to router denied", plain, "egress-10-0-0-14", "router-8081-10-0-0-12", false, ""},
		{"mesh.allow router to postgres", allowed, "egress-10-0-0-12", "postgres-5432-10-0-0-14", true, "router -> postgres (mesh.allow, line 7)"},
		{"mesh.allow keeps the table's reason", allowed, "egress-10-0-0-12", "qpid-5672-10-0-0-15", true, "(Apigee table)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := find(tc.ints, tc.src, tc.dst)
			if !tc.allow {
				if got != nil {
					t.Errorf("%s -> %s listed: %+v", tc.src, tc.dst, got)
				}
				return
			}
			if got == nil || got.Action != "allow" || !strings.Contains(got.Description, tc.why) {
				t.Errorf("%s -> %s: %+v, want allow saying %q", tc.src, tc.dst, got, tc.why)
			}
		})
	}
	for _, i := range plain[1:] {
		if i.Action != "allow" || !strings.HasPrefix(i.Source, "egress-") || strings.HasPrefix(i.Destination, "egress-") {
			t.Errorf("unexpected intention %+v", i)
		}
	}
	// mesh.allow adds exactly the router -> postgres pairs: the routers on
	// n2 and n3 to both listeners of both postgres nodes.
	if d := len(allowed) - len(plain); d != 2*2*2 {
		t.Errorf("mesh.allow added %d intentions, want 8", d)
	}

	off, err := Intentions(fiveNode(t).Topology, fiveNode(t).Ports)
	if err != nil || off != nil {
		t.Errorf("disabled mesh: %v, %v; want none", off, err)
	}
	if _, err := Intentions(nil, nil); !errors.Is(err, ErrBadTopology) {
		t.Errorf("Intentions(nil): %v", err)
	}
}

func TestMeshPortReport(t *testing.T) {
	in := fiveNodeMesh(t)
	r := PortReport(in.Topology, in.Ports)
	var buf strings.Builder
	if err := r.WriteApigee(&buf); err != nil {
		t.Fatal(err)
	}
	rep := decodeApigee(t, []byte(buf.String()))
	h := rep["10.0.0.12"]
	if got := strings.Join(slices.Sorted(func(yield func(string) bool) {
		for k := range h.Daemons {
			if !yield(k) {
				return
			}
		}
	}), ","); got != "cassandra-ingress,consul-server,egress,message-processor-ingress,router-ingress,zookeeper-ingress" {
		t.Errorf("n2 daemons %s", got)
	}
	zk := h.Daemons["zookeeper-ingress"]
	if !*zk.Ingress || zk.Name != "zk-2181-10-0-0-12" || len(zk.Listeners) != 3 ||
		zk.Listeners[1].Port != 10005 || zk.Listeners[1].IP != "10.0.0.12" || zk.Listeners[1].Purpose == "" {
		t.Errorf("zookeeper-ingress %+v", zk)
	}
	mp := h.Daemons["message-processor-ingress"]
	if mp.Name != "mp-8082-10-0-0-12" || len(mp.Listeners) != 2 {
		t.Errorf("message-processor-ingress %+v", mp)
	}
	eg := h.Daemons["egress"]
	if *eg.Ingress || eg.Name != "egress-10-0-0-12" || len(eg.Listeners) != 1+23 || eg.Listeners[0].IP != "127.0.0.1" || eg.Listeners[1].IP != "127.77.0.1" {
		t.Errorf("egress %s %d listeners, first %+v", eg.Name, len(eg.Listeners), eg.Listeners[:2])
	}
	if _, ok := rep["10.0.0.14"].Daemons["consul-agent"]; !ok {
		t.Error("n4 has no consul-agent daemon")
	}

	// ports.json is the node's part of the report.
	b, err := RenderNode(in, "n2")
	if err != nil {
		t.Fatal(err)
	}
	var got NodeReport
	if err := json.Unmarshal(b.File("/var/lib/mtlsctl/ports.json").Content, &got); err != nil {
		t.Fatal(err)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(r.Nodes[1])
	if string(g) != string(w) {
		t.Errorf("ports.json\n%s\nwant\n%s", g, w)
	}
}

// TestMeshModes: the mode of every mesh file, and that WriteTree keeps it.
func TestMeshModes(t *testing.T) {
	b, err := RenderNode(fiveNodeMesh(t), "n5")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range b.Files {
		if (f.Kind == KindUnit || strings.HasSuffix(f.Path, ".sh")) && f.Mode != fs.FileMode(0o644) {
			t.Errorf("%s mode %v, want 0644", f.Path, f.Mode)
		}
	}
}

// TestLDAPOutsideMesh: encapsulate_ldap: false (Apigee's
// MTLS_ENCAPSULATE_LDAP=n) leaves OpenLDAP outside the mesh: no ingress
// service or proxy for it, no intention to it, no nat rule towards its
// port, no loopback-only rule for it; the rest of the mesh is unchanged.
func TestLDAPOutsideMesh(t *testing.T) {
	// Two datacenters: each has a Management Server and an OpenLDAP, so
	// intentions to LDAP cross nodes.
	on := twoDCMesh(t)
	off := twoDCMesh(t)
	off.Topology.Cluster.Mesh.LDAPOutside = true
	bOn, err := Render(on)
	if err != nil {
		t.Fatal(err)
	}
	bOff, err := Render(off)
	if err != nil {
		t.Fatal(err)
	}
	mentions := func(bs []Bundle) (n int) {
		for _, b := range bs {
			for _, f := range b.Files {
				if strings.Contains(f.Path, "ldap-10389") || strings.Contains(string(f.Content), "ldap-10389") || strings.Contains(string(f.Content), "--dport 10389") {
					n++
				}
			}
		}
		return n
	}
	if mentions(bOn) == 0 {
		t.Fatal("test bug: the meshed LDAP renders nothing about ldap-10389")
	}
	if n := mentions(bOff); n != 0 {
		t.Errorf("with LDAP outside the mesh, %d files still mention ldap-10389 or port 10389", n)
	}
	iOn, _ := Intentions(on.Topology, on.Ports)
	iOff, err := Intentions(off.Topology, off.Ports)
	if err != nil {
		t.Fatal(err)
	}
	ldapAllows := 0
	for _, i := range iOn {
		if strings.HasPrefix(i.Destination, "ldap-") {
			ldapAllows++
		}
	}
	if ldapAllows == 0 || len(iOff) != len(iOn)-ldapAllows {
		t.Errorf("intentions: %d with LDAP meshed (%d to LDAP), %d without", len(iOn), ldapAllows, len(iOff))
	}
	for _, i := range iOff {
		if strings.HasPrefix(i.Destination, "ldap-") {
			t.Errorf("intention to LDAP left: %s -> %s", i.Source, i.Destination)
		}
	}
	for i := range bOff {
		if bOff[i].Mesh == nil || len(bOff[i].Mesh.Proxies) == 0 {
			t.Errorf("%s: no proxies at all", bOff[i].Node)
		}
	}
}
