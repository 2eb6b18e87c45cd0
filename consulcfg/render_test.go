package consulcfg

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"testing"

	"github.com/mtlsctl/mtlsctl/inventory"
)

func TestRenderDeterministic(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Render(tc.input(t))
			if err != nil {
				t.Fatal(err)
			}
			for range 5 {
				b, err := Render(tc.input(t))
				if err != nil {
					t.Fatal(err)
				}
				for i := range a {
					if a[i].Generation != b[i].Generation {
						t.Fatalf("node %s: generation %s then %s", a[i].Node, a[i].Generation, b[i].Generation)
					}
				}
			}
		})
	}
}

func TestRenderOrderAndRenderNode(t *testing.T) {
	in := twoDC(t)
	all, err := Render(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(in.Topology.Nodes) {
		t.Fatalf("%d bundles for %d nodes", len(all), len(in.Topology.Nodes))
	}
	for i, n := range in.Topology.Nodes {
		if all[i].Node != n.Name {
			t.Errorf("bundle %d is %s, want %s (topology order)", i, all[i].Node, n.Name)
		}
		one, err := RenderNode(in, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		if one.Generation != all[i].Generation {
			t.Errorf("RenderNode(%s) differs from Render", n.Name)
		}
	}
	_, err = RenderNode(in, "nope")
	var ne *NodeError
	if !errors.Is(err, ErrUnknownNode) || !errors.As(err, &ne) || ne.Node != "nope" {
		t.Errorf("RenderNode(nope) = %v, want a NodeError wrapping ErrUnknownNode", err)
	}
}

func TestRenderErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Input)
		want   error
		node   string // the NodeError must name it ("" = not a node error)
		text   string // the message must contain it
	}{
		{"no leaf", func(in *Input) { delete(in.Leaves, "n4") }, ErrNoLeaf, "n4", "mtlsctl generate"},
		{"empty key", func(in *Input) { l := in.Leaves["n2"]; l.KeyPEM = nil; in.Leaves["n2"] = l }, ErrNoLeaf, "n2", ""},
		{"key is a cert", func(in *Input) { l := in.Leaves["n2"]; l.KeyPEM = l.CertPEM; in.Leaves["n2"] = l }, ErrBadLeaf, "n2", "private key"},
		{"no ports at all", func(in *Input) { delete(in.Ports.Nodes, "n5") }, ErrNoPorts, "n5", "egress"},
		{"short component ports", func(in *Input) { in.Ports.Nodes["n4"]["postgres"] = []int{10300} }, ErrNoPorts, "n4", "postgres has 1 ports, needs 3"},
		{"port out of range", func(in *Input) { in.Ports.Nodes["n1"][inventory.Egress] = []int{70000} }, ErrNoPorts, "n1", "70000"},
		{"port used twice", func(in *Input) { in.Ports.Nodes["n4"]["qpid"][1] = 10300 }, ErrNoPorts, "n4", "qpid-server-n4 port 10300 is already used by postgres-n4"},
		{"consul port", func(in *Input) { in.Ports.Nodes["n4"][inventory.Egress] = []int{8500} }, ErrNoPorts, "n4", "the consul agent"},
		{"nil assignment", func(in *Input) { in.Ports = nil }, ErrNoPorts, "n1", ""},
		{"CA key in CA bundle", func(in *Input) {
			in.CABundle = append(in.CABundle, fakePEM("EC PRIVATE KEY", "ca key")...)
		}, ErrBadCABundle, "", "EC PRIVATE KEY"},
		{"empty CA bundle", func(in *Input) { in.CABundle = nil }, ErrBadCABundle, "", "no PEM certificate"},
		{"CA trailing junk", func(in *Input) { in.CABundle = append(in.CABundle, "junk"...) }, ErrBadCABundle, "", "trailing"},
		{"gossip key missing", func(in *Input) { in.GossipKey = "" }, ErrBadGossipKey, "", "generate"},
		{"gossip key not base64", func(in *Input) { in.GossipKey = "not base64 !!" }, ErrBadGossipKey, "", "fingerprint"},
		{"gossip key wrong size", func(in *Input) { in.GossipKey = "AAECAwQFBgc=" }, ErrBadGossipKey, "", "8 bytes"},
		{"bad version", func(in *Input) { in.Topology.Cluster.Consul.Version = "latest" }, ErrBadTopology, "", "consul.version"},
		{"relative config dir", func(in *Input) { in.Topology.Cluster.Consul.ConfigDir = "etc/consul.d" }, ErrBadTopology, "", "consul.config_dir"},
		{"no topology", func(in *Input) { in.Topology = nil }, ErrBadTopology, "", ""},
		{"only template servers", func(in *Input) {
			for _, n := range in.Topology.Servers("dc-1") {
				n.Address = `{{ GetPrivateIP }}`
			}
		}, ErrNoJoinAddress, "", "datacenter dc-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := fiveNode(t)
			tc.modify(&in)
			bundles, err := Render(in)
			if err == nil {
				t.Fatalf("Render succeeded with %d bundles", len(bundles))
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if tc.node != "" {
				var ne *NodeError
				if !errors.As(err, &ne) {
					t.Errorf("error %v is not a *NodeError", err)
				}
				if !strings.Contains(err.Error(), "node "+tc.node+":") {
					t.Errorf("error %q does not name node %s", err, tc.node)
				}
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not say %q", err, tc.text)
			}
			if in.GossipKey != "" && strings.Contains(err.Error(), in.GossipKey) {
				t.Errorf("error shows the gossip key")
			}
		})
	}
}

func TestFileModesAndOwners(t *testing.T) {
	for _, tc := range []struct {
		name        string
		user, group string
		secret      fs.FileMode
	}{
		{"root", "", "", 0o600},
		{"consul user only", "consul", "", 0o600},
		{"consul group", "consul", "consul", 0o640},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := fiveNode(t)
			in.Topology.Cluster.Consul.User, in.Topology.Cluster.Consul.Group = tc.user, tc.group
			b, err := RenderNode(in, "n1")
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]struct {
				mode  fs.FileMode
				kind  Kind
				owned bool
			}{
				"/etc/consul.d/tls/ca.pem":            {0o644, KindCACert, true},
				"/etc/consul.d/tls/agent.pem":         {0o644, KindCert, true},
				"/etc/consul.d/tls/agent-key.pem":     {tc.secret, KindKey, true},
				"/etc/consul.d/mtlsctl-agent.json":    {tc.secret, KindConfig, true},
				"/etc/consul.d/mtlsctl-services.json": {0o644, KindService, true},
				"/var/lib/mtlsctl/firewall.rules":     {0o644, KindOther, false},
				"/var/lib/mtlsctl/ports.json":         {0o644, KindOther, false},
			}
			if len(b.Files) != len(want) {
				t.Errorf("%d files, want %d", len(b.Files), len(want))
			}
			for i, f := range b.Files {
				if i > 0 && b.Files[i-1].Path >= f.Path {
					t.Errorf("files not sorted by path at %s", f.Path)
				}
				w, ok := want[f.Path]
				if !ok {
					t.Errorf("unexpected file %s", f.Path)
					continue
				}
				if f.Mode != w.mode || f.Kind != w.kind {
					t.Errorf("%s: mode %v kind %s, want %v %s", f.Path, f.Mode, f.Kind, w.mode, w.kind)
				}
				wu, wg := "", ""
				if w.owned {
					wu, wg = tc.user, tc.group
				}
				if f.Owner != wu || f.Group != wg {
					t.Errorf("%s: owner %s:%s, want %s:%s", f.Path, f.Owner, f.Group, wu, wg)
				}
				if f.Kind != KindKey && bytes.Contains(f.Content, []byte("PRIVATE KEY")) {
					t.Errorf("%s holds a private key", f.Path)
				}
			}
		})
	}
}

// agentJSON renders node's agent config and decodes it.
func agentJSON(t *testing.T, in Input, node string) map[string]any {
	t.Helper()
	b, err := RenderNode(in, node)
	if err != nil {
		t.Fatal(err)
	}
	f := b.File(in.Topology.Cluster.Consul.ConfigDir + "/" + AgentConfigName)
	if !bytes.HasSuffix(f.Content, []byte("}\n")) || !bytes.HasPrefix(f.Content, []byte("{\n  \"")) {
		t.Errorf("agent config is not 2-space indented JSON with a trailing newline")
	}
	var m map[string]any
	if err := json.Unmarshal(f.Content, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAgentConfigSchemaByVersion(t *testing.T) {
	flat := []string{"ca_file", "cert_file", "key_file", "verify_incoming", "verify_outgoing", "verify_server_hostname"}
	for _, tc := range []struct {
		version string
		stanza  bool
	}{
		{"1.6.2", false}, {"v1.11.9", false}, {"1.12.0", true}, {"1.13.9+ent", true}, {"2.0", true},
	} {
		t.Run(tc.version, func(t *testing.T) {
			in := fiveNode(t)
			in.Topology.Cluster.Consul.Version = tc.version
			m := agentJSON(t, in, "n1")
			_, hasTLS := m["tls"]
			if hasTLS != tc.stanza {
				t.Errorf("tls stanza present=%v, want %v", hasTLS, tc.stanza)
			}
			for _, k := range flat {
				if _, ok := m[k]; ok == tc.stanza {
					t.Errorf("top-level %s present=%v with tls stanza=%v", k, ok, tc.stanza)
				}
			}
			if tc.stanza {
				tls := m["tls"].(map[string]any)
				d := tls["defaults"].(map[string]any)
				if d["verify_incoming"] != true || d["verify_outgoing"] != true || d["key_file"] != "/etc/consul.d/tls/agent-key.pem" {
					t.Errorf("tls.defaults = %v", d)
				}
				if tls["internal_rpc"].(map[string]any)["verify_server_hostname"] != true {
					t.Errorf("tls.internal_rpc = %v", tls["internal_rpc"])
				}
				// Envoy presents no client certificate for xDS: gRPC must not
				// demand one (hashicorp/consul#13088).
				if g, ok := tls["grpc"].(map[string]any); !ok || g["verify_incoming"] != false {
					t.Errorf("tls.grpc = %v, want verify_incoming false", tls["grpc"])
				}
			}
		})
	}
}

func TestAgentConfigRoles(t *testing.T) {
	in := twoDC(t)
	tests := []struct {
		node       string
		server     bool
		expect     float64
		joinFirst  string
		wan        int
		addresses  bool
		bindTmpl   bool
		primaryDC  string
		domainSeen string
	}{
		{node: "n1", server: true, expect: 3, joinFirst: "10.0.1.11", wan: 6, addresses: true, primaryDC: "dc-1", domainSeen: "edge.internal"},
		{node: "n4", joinFirst: "10.0.1.11", primaryDC: "dc-1", domainSeen: "edge.internal"},
		{node: "m3", server: true, expect: 3, joinFirst: "10.0.2.11", wan: 6, addresses: true, primaryDC: "dc-1", domainSeen: "edge.internal"},
		{node: "m4", joinFirst: "10.0.2.11", bindTmpl: true, primaryDC: "dc-1", domainSeen: "edge.internal"},
	}
	for _, tc := range tests {
		t.Run(tc.node, func(t *testing.T) {
			m := agentJSON(t, in, tc.node)
			if m["server"] != tc.server || m["node_name"] != tc.node || m["client_addr"] != "127.0.0.1" {
				t.Errorf("server=%v node_name=%v client_addr=%v", m["server"], m["node_name"], m["client_addr"])
			}
			if got, _ := m["bootstrap_expect"].(float64); got != tc.expect {
				t.Errorf("bootstrap_expect %v, want %v", got, tc.expect)
			}
			if join := m["retry_join"].([]any); join[0] != tc.joinFirst || len(join) != 3 {
				t.Errorf("retry_join %v", join)
			}
			wan, _ := m["retry_join_wan"].([]any)
			if len(wan) != tc.wan {
				t.Errorf("retry_join_wan %v, want %d entries", wan, tc.wan)
			}
			if _, ok := m["addresses"]; ok != tc.addresses {
				t.Errorf("addresses present=%v, want %v", ok, tc.addresses)
			}
			if strings.HasPrefix(m["bind_addr"].(string), "{{") != tc.bindTmpl || m["bind_addr"] != m["advertise_addr"] {
				t.Errorf("bind_addr %v advertise_addr %v", m["bind_addr"], m["advertise_addr"])
			}
			if m["primary_datacenter"] != tc.primaryDC || m["domain"] != tc.domainSeen {
				t.Errorf("primary_datacenter %v domain %v", m["primary_datacenter"], m["domain"])
			}
			if m["encrypt"] != testGossipKey || m["encrypt_verify_incoming"] != true || m["encrypt_verify_outgoing"] != true {
				t.Errorf("gossip settings wrong")
			}
			if m["connect"].(map[string]any)["enabled"] != true {
				t.Errorf("connect not enabled")
			}
			ports := m["ports"].(map[string]any)
			if ports["grpc"] != float64(8502) || ports["https"] != float64(8503) {
				t.Errorf("ports %v", ports)
			}
		})
	}

	t.Run("single DC", func(t *testing.T) {
		m := agentJSON(t, fiveNode(t), "n1")
		for _, k := range []string{"primary_datacenter", "retry_join_wan", "domain"} {
			if _, ok := m[k]; ok {
				t.Errorf("single-DC config has %s", k)
			}
		}
	})
	t.Run("template server", func(t *testing.T) {
		in := fiveNode(t)
		tmpl := `{{ GetPrivateIP }}`
		in.Topology.Node("n3").Address = tmpl
		m := agentJSON(t, in, "n3")
		if got := m["addresses"].(map[string]any)["https"]; got != "127.0.0.1 "+tmpl {
			t.Errorf("addresses.https %v", got)
		}
		if join := m["retry_join"].([]any); len(join) != 2 {
			t.Errorf("retry_join %v: a template cannot be joined from another node", join)
		}
		if m["bootstrap_expect"] != float64(3) {
			t.Errorf("bootstrap_expect %v: the template server still counts", m["bootstrap_expect"])
		}
	})
	t.Run("gossip transition", func(t *testing.T) {
		in := fiveNode(t)
		in.GossipTransition = true
		m := agentJSON(t, in, "n4")
		if m["encrypt_verify_incoming"] != false || m["encrypt_verify_outgoing"] != false {
			t.Errorf("encrypt_verify_* should be false during the transition")
		}
	})
}

func TestRedact(t *testing.T) {
	b, err := RenderNode(fiveNode(t), "n1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := b.File("/etc/consul.d/mtlsctl-agent.json").Content
	red := Redact(cfg)
	fp := GossipKeyFingerprint(testGossipKey)
	if bytes.Contains(red, []byte(testGossipKey)) {
		t.Fatal("redacted config still holds the gossip key")
	}
	if !bytes.Contains(red, []byte(`"encrypt": "<redacted `+fp+`>"`)) {
		t.Errorf("redacted config lacks the fingerprint:\n%s", red)
	}
	if !bytes.Contains(cfg, []byte(testGossipKey)) {
		t.Error("Redact changed its input")
	}
	// The one definition (internal/fingerprint): SHA-256 of the decoded key
	// bytes 0..31, the same as ca.GossipFingerprint and `mtlsctl status`.
	if fp != "sha256:630dcd2966c43366" {
		t.Errorf("fingerprint %q, want sha256:630dcd2966c43366", fp)
	}
	if GossipKeyFingerprint(testGossipKey) == GossipKeyFingerprint("AAECAwQFBgcICQoLDA0ODw==") {
		t.Error("two keys share a fingerprint")
	}
	// ACL tokens: the agent's in the config, each service's in the services file.
	in := withACL(fiveNodeMesh)(t)
	ab, err := RenderNode(in, "n1")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range ab.Files {
		red := string(Redact(f.Content))
		if f.Kind == KindConfig || f.Kind == KindService {
			if !strings.Contains(red, "<redacted token:") {
				t.Errorf("%s: no token fingerprint after Redact", f.Path)
			}
		}
		if f.Kind == KindToken {
			if !f.Secret() || f.Mode != 0o600 || f.Owner != "nobody" {
				t.Errorf("%s: token file not secret 0600 nobody: %v %o %s", f.Path, f.Secret(), f.Mode, f.Owner)
			}
			continue
		}
		for _, tok := range in.Tokens["n1"].Services {
			if strings.Contains(red, tok) {
				t.Errorf("%s: a service token survives Redact", f.Path)
			}
		}
		if strings.Contains(red, in.Tokens["n1"].Agent) {
			t.Errorf("%s: the agent token survives Redact", f.Path)
		}
	}
	for _, s := range []string{`{"datacenter": "dc-1"}`, `{"encrypt_verify_incoming": true}`, ``} {
		if got := Redact([]byte(s)); string(got) != s {
			t.Errorf("Redact(%q) = %q", s, got)
		}
	}
	if got := Redact([]byte(`{"encrypt":"abc"}`)); bytes.Contains(got, []byte("abc")) {
		t.Errorf("compact JSON not redacted: %s", got)
	}
}

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want version
		ok   bool
	}{
		{"1.6.2", version{1, 6, 2}, true},
		{"v1.13.9", version{1, 13, 9}, true},
		{"1.12", version{1, 12, 0}, true},
		{"1.13.9+ent", version{1, 13, 9}, true},
		{"1.12.0-beta1", version{1, 12, 0}, true},
		{"", version{}, false},
		{"1", version{}, false},
		{"1.x.2", version{}, false},
		{"1.2.3.4", version{}, false},
		{"-1.2", version{}, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseVersion(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Errorf("parseVersion(%q) = %v, %v", tc.in, got, err)
			}
		})
	}
	if !(version{1, 11, 9}).less(version{1, 12, 0}) || (version{1, 12, 0}).less(version{1, 12, 0}) {
		t.Error("less is wrong")
	}
}

func TestServices(t *testing.T) {
	in := fiveNode(t)
	for _, tc := range []struct {
		node  string
		ids   []string
		ports []int
	}{
		{"n1", []string{"zookeeper-n1", "zookeeper-quorum-n1", "zookeeper-election-n1", "cassandra-n1", "cassandra-thrift-n1", "openldap-n1", "apigee-mtls-n1"},
			[]int{10001, 10002, 10003, 10100, 10101, 10200, 10700}},
		{"n5", []string{"postgres-n5", "postgres-server-n5", "postgres-replication-n5", "qpid-n5", "qpid-server-n5", "apigee-mtls-n5"},
			[]int{10303, 10304, 10305, 10402, 10403, 10704}},
	} {
		t.Run(tc.node, func(t *testing.T) {
			b, err := RenderNode(in, tc.node)
			if err != nil {
				t.Fatal(err)
			}
			var f servicesFile
			if err := json.Unmarshal(b.File("/etc/consul.d/mtlsctl-services.json").Content, &f); err != nil {
				t.Fatal(err)
			}
			if len(f.Services) != len(tc.ids) {
				t.Fatalf("%d services, want %d", len(f.Services), len(tc.ids))
			}
			for i, s := range f.Services {
				if s.ID != tc.ids[i] {
					t.Errorf("service %d id %s, want %s", i, s.ID, tc.ids[i])
				}
				listen := s.Port
				if sc := s.Connect.SidecarService; sc != nil {
					listen = sc.Port
					if sc.Proxy.LocalServiceAddress != "127.0.0.1" || sc.Proxy.LocalServicePort != s.Port {
						t.Errorf("%s: sidecar proxy %+v", s.ID, sc.Proxy)
					}
				} else if s.Name != EgressService || !s.Connect.Native {
					t.Errorf("%s: neither a sidecar nor the native egress service", s.ID)
				}
				if listen != tc.ports[i] {
					t.Errorf("%s listens on %d, want %d", s.ID, listen, tc.ports[i])
				}
			}
		})
	}
}

// TestListenerTable keeps both listener tables in line with Apigee's ports
// per node: the disabled mesh's uses every assigned port, the mesh's never
// more than are assigned (Postgres keeps its third port reserved).
func TestListenerTable(t *testing.T) {
	want := map[inventory.Component]int{
		inventory.ZooKeeper: 3, inventory.Cassandra: 2, inventory.OpenLDAP: 1, inventory.Postgres: 3,
		inventory.Qpid: 2, inventory.MessageProcessor: 2, inventory.Router: 2,
	}
	meshWant := map[inventory.Component]string{
		inventory.ZooKeeper: "2181 2888 3888", inventory.Cassandra: "9042 9160", inventory.OpenLDAP: "10389",
		inventory.Postgres: "5432 8084", inventory.Qpid: "5672 8083",
		inventory.MessageProcessor: "8082 4528", inventory.Router: "8081 4527",
	}
	for _, c := range inventory.Components {
		if got := len(legacyListeners[c]); got != want[c] || got != inventory.PortsPerNode(string(c)) {
			t.Errorf("%s: %d legacy listeners, want %d", c, got, want[c])
		}
		seen := map[string]bool{}
		for _, l := range legacyListeners[c] {
			if seen[l.Service] || l.Target <= 0 || l.Purpose == "" {
				t.Errorf("%s: bad listener %+v", c, l)
			}
			seen[l.Service] = true
		}
		var targets []string
		for _, l := range meshListeners[c] {
			targets = append(targets, strconv.Itoa(l.Target))
			if l.Purpose == "" {
				t.Errorf("%s %d: no purpose", c, l.Target)
			}
		}
		if got := strings.Join(targets, " "); got != meshWant[c] {
			t.Errorf("%s: mesh listeners %q, want %q", c, got, meshWant[c])
		}
		if len(meshListeners[c]) > inventory.PortsPerNode(string(c)) {
			t.Errorf("%s: %d mesh listeners but %d ports per node", c, len(meshListeners[c]), inventory.PortsPerNode(string(c)))
		}
		if (len(meshListeners[c]) > 0) != (shortNames[c] != "") {
			t.Errorf("%s: short name %q", c, shortNames[c])
		}
	}
}

// TestFileHashes checks every file's SHA256 against its content (the
// firewall file's hash is computed incrementally from a shared prefix).
func TestFileHashes(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			bundles, err := Render(tc.input(t))
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range bundles {
				for _, f := range b.Files {
					if want := NewFile(f.Path, f.Content, f.Mode, f.Kind).SHA256; f.SHA256 != want {
						t.Errorf("%s %s: SHA256 %s, content hashes to %s", b.Node, f.Path, f.SHA256, want)
					}
				}
			}
		})
	}
}
