package inventory

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseMesh(t *testing.T) {
	def := Mesh{Enabled: true, UnitDir: DefaultUnitDir, ConsulBinary: DefaultConsulBinary, ProxyUser: DefaultProxyUser}
	with := func(f func(m *Mesh)) Mesh {
		m := def
		f(&m)
		return m
	}
	tests := []struct {
		name     string
		old, new string // replace old by new in baseYAML ("" = no change)
		tail     string // then append this
		want     Mesh
		written  []string // Marshal writes these
		omitted  []string // and not these
	}{
		{"absent", "", "", "", def, nil, []string{"mesh:"}},
		{"empty", "", "", "mesh:\n", def, nil, []string{"mesh:"}},
		{"empty mapping", "", "", "mesh: {}\n", def, nil, []string{"mesh:"}},
		{"enabled true", "", "", "mesh: {enabled: true}\n", def, nil, []string{"mesh:"}},
		{"disabled", "", "", "mesh: {enabled: false}\n", with(func(m *Mesh) { m.Enabled = false }), []string{"mesh:\n  enabled: false\n"}, nil},
		{"disabled as no", "", "", "mesh:\n  enabled: no\n", with(func(m *Mesh) { m.Enabled = false }), []string{"enabled: false"}, nil},
		{"paths", "", "", "mesh:\n  unit_dir: /usr/lib/systemd/system\n  consul_binary: /opt/consul-1.6.2/bin/consul\n",
			with(func(m *Mesh) { m.UnitDir, m.ConsulBinary = "/usr/lib/systemd/system", "/opt/consul-1.6.2/bin/consul" }),
			[]string{"mesh:\n  unit_dir: /usr/lib/systemd/system\n  consul_binary: /opt/consul-1.6.2/bin/consul\n"}, []string{"enabled"}},
		{"default paths written out", "", "", "mesh:\n  unit_dir: /etc/systemd/system\n  consul_binary: /usr/bin/consul\n  proxy_user: nobody\n", def, nil, []string{"mesh:"}},
		{"proxy user from consul.user", "  version: \"1.6.2\"", "  version: \"1.6.2\"\n  user: consul", "",
			with(func(m *Mesh) { m.ProxyUser = "consul" }), []string{"user: consul"}, []string{"mesh:", "proxy_user"}},
		{"proxy user equal to consul.user", "  version: \"1.6.2\"", "  version: \"1.6.2\"\n  user: consul", "mesh: {proxy_user: consul}\n",
			with(func(m *Mesh) { m.ProxyUser = "consul" }), nil, []string{"mesh:", "proxy_user"}},
		{"nobody despite consul.user", "  version: \"1.6.2\"", "  version: \"1.6.2\"\n  user: consul", "mesh: {proxy_user: nobody}\n",
			def, []string{"mesh:\n  proxy_user: nobody\n"}, nil},
		{"proxy user", "", "", "mesh:\n  proxy_user: consul-proxy_1.x\n", with(func(m *Mesh) { m.ProxyUser = "consul-proxy_1.x" }), []string{"proxy_user: consul-proxy_1.x"}, nil},
		{"allow rules", "", "", "mesh:\n  allow:\n    - {from: ui, to: router}\n    - from: router\n      to: openldap\n    - {from: qpid, to: qpid}\n",
			with(func(m *Mesh) {
				m.Allow = []AllowRule{{From: UI, To: Router, Line: 22}, {From: Router, To: OpenLDAP, Line: 23}, {From: Qpid, To: Qpid, Line: 25}}
			}),
			[]string{"mesh:\n  allow:\n    - {from: ui, to: router}\n    - {from: router, to: openldap}\n    - {from: qpid, to: qpid}\n"}, []string{"enabled"}},
		{"a rule Apigee's table already has", "", "", "mesh:\n  allow:\n    - {from: management-server, to: postgres}\n",
			with(func(m *Mesh) { m.Allow = []AllowRule{{From: ManagementServer, To: Postgres, Line: 22}} }), []string{"from: management-server"}, nil},
		{"empty allow list", "", "", "mesh:\n  allow: []\n", def, nil, []string{"mesh:"}},
		{"template with the mesh off", "        address: 198.18.0.12", "        address: '{{ GetPrivateInterfaces | attr \"address\" }}'\n        ssh_host: n2.example.internal", "mesh: {enabled: false}\n",
			with(func(m *Mesh) { m.Enabled = false }), []string{"enabled: false", "GetPrivateInterfaces"}, nil},
		{"IPv6 with the mesh off", "198.18.0.12", "'2001:db8::12'", "mesh:\n  enabled: false\n",
			with(func(m *Mesh) { m.Enabled = false }), []string{"enabled: false", "2001:db8::12"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := baseYAML
			if tt.old != "" {
				if !strings.Contains(doc, tt.old) {
					t.Fatalf("test bug: %q not in base", tt.old)
				}
				doc = strings.Replace(doc, tt.old, tt.new, 1)
			}
			doc += tt.tail
			top := mustParse(t, doc)
			if !reflect.DeepEqual(top.Cluster.Mesh, tt.want) {
				t.Errorf("mesh = %+v, want %+v", top.Cluster.Mesh, tt.want)
			}
			out, err := Marshal(top.Cluster)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.written {
				if !strings.Contains(string(out), w) {
					t.Errorf("Marshal lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.omitted {
				if strings.Contains(string(out), w) {
					t.Errorf("Marshal writes %q:\n%s", w, out)
				}
			}
			checkRoundTrip(t, top)
		})
	}
}

func TestParseMeshErrors(t *testing.T) {
	const tmpl = `'{{ GetPrivateInterfaces | attr "address" }}' # here`
	const fix = "set address to the node's IPv4 address, or set mesh: {enabled: false}"
	tests := []struct {
		name     string
		old, new string // replace old by new in baseYAML ("" = no change)
		tail     string // then append this
		field    string // the problem is on the line holding "# here"
		msg      string
	}{
		{"unknown key", "", "", "mesh:\n  enable: false # here\n", "mesh.enable", `unknown key "enable" (did you mean "enabled"?); valid keys here: enabled, unit_dir, consul_binary, proxy_user, encapsulate_ldap, allow`},
		{"key given twice", "", "", "mesh:\n  enabled: true\n  enabled: false # here\n", "mesh.enabled", `key "enabled" given twice`},
		{"not a mapping", "", "", "mesh: on # here\n", "mesh", `must be a mapping of keys, found "on"`},
		{"enabled not a bool", "", "", "mesh:\n  enabled: maybe # here\n", "mesh.enabled", `must be true or false, found "maybe"`},
		{"enabled empty", "", "", "mesh:\n  enabled: # here\n", "mesh.enabled", "must be true or false, found nothing"},
		{"enabled a list", "", "", "mesh:\n  enabled: [true] # here\n", "mesh.enabled", "must be a single value"},
		{"relative unit_dir", "", "", "mesh:\n  unit_dir: etc/systemd/system # here\n", "mesh.unit_dir", `path "etc/systemd/system" must be absolute (it is a path on the nodes), e.g. /etc/systemd/system`},
		{"root unit_dir", "", "", "mesh:\n  unit_dir: / # here\n", "mesh.unit_dir", "is the root directory"},
		{"relative consul_binary", "", "", "mesh:\n  consul_binary: consul # here\n", "mesh.consul_binary", `consul_binary "consul" must be the absolute path of the consul binary on the nodes`},
		{"consul_binary with a space", "", "", "mesh:\n  consul_binary: /opt/my consul/consul # here\n", "mesh.consul_binary", "(it goes into the proxy units' ExecStart=), e.g. /usr/bin/consul"},
		{"consul_binary with a specifier", "", "", "mesh:\n  consul_binary: /usr/bin/consul%i # here\n", "mesh.consul_binary", "must be the absolute path"},
		{"consul_binary a directory", "", "", "mesh:\n  consul_binary: /usr/bin/ # here\n", "mesh.consul_binary", "must be the absolute path"},
		{"proxy_user with a space", "", "", "mesh:\n  proxy_user: proxy user # here\n", "mesh.proxy_user", `proxy_user "proxy user" is not a valid user name`},
		{"proxy_user starting with a digit", "", "", "mesh:\n  proxy_user: 1proxy # here\n", "mesh.proxy_user", "not a valid user name"},
		{"proxy_user too long", "", "", "mesh:\n  proxy_user: " + strings.Repeat("p", 33) + " # here\n", "mesh.proxy_user", "at most 32 characters"},
		{"consul.user unfit for the proxies", `  version: "1.6.2"`, "  version: \"1.6.2\"\n  user: 9consul # here", "", "consul.user", `the proxies run as consul.user "9consul" by default, which is not a valid user name for them: fix it, or set mesh.proxy_user`},
		{"allow not a list", "", "", "mesh:\n  allow: {from: router, to: qpid} # here\n", "mesh.allow", "must be a list"},
		{"allow item not a mapping", "", "", "mesh:\n  allow:\n    - router # here\n", "mesh.allow[0]", `must be a mapping of keys, found "router"`},
		{"allow unknown key", "", "", "mesh:\n  allow:\n    - {from: router, to: qpid, port: 5672} # here\n", "mesh.allow[0].port", `unknown key "port"`},
		{"allow unknown from", "", "", "mesh:\n  allow:\n    - {from: qpid, to: qpid}\n    - {from: routr, to: qpid} # here\n", "mesh.allow[1].from", `unknown component "routr" (did you mean "router"?); valid: zookeeper, cassandra`},
		{"allow from egress", "", "", "mesh:\n  allow:\n    - {from: egress, to: qpid} # here\n", "mesh.allow[0].from", `unknown component "egress"`},
		{"allow to management-server", "", "", "mesh:\n  allow:\n    - {from: router, to: management-server} # here\n", "mesh.allow[0].to", "management-server has no mesh listener to allow traffic to (its clients reach it outside the mesh): give one of zookeeper, cassandra, openldap, postgres, qpid, message-processor, router"},
		{"allow to ui", "", "", "mesh:\n  allow:\n    - from: router\n      to: ui # here\n", "mesh.allow[0].to", "ui has no mesh listener"},
		{"allow to unknown", "", "", "mesh:\n  allow:\n    - {from: router, to: postgress} # here\n", "mesh.allow[0].to", `unknown component "postgress" (did you mean "postgres"?); valid: zookeeper, cassandra, openldap, postgres, qpid, message-processor, router`},
		{"allow without from", "", "", "mesh:\n  allow:\n    - {to: qpid} # here\n", "mesh.allow[0].from", "allow rule has no from"},
		{"allow without to", "", "", "mesh:\n  allow:\n    - from: router # here\n", "mesh.allow[0].to", "allow rule has no to"},
		{"allow empty item", "", "", "mesh:\n  allow:\n    - # here\n", "mesh.allow[0].from", "allow rule has no from"},
		{"allow duplicate", "", "", "mesh:\n  allow:\n    - {from: router, to: qpid}\n    - {from: ui, to: qpid}\n    - {to: qpid, from: router} # here\n", "mesh.allow[2]", "allow rule from router to qpid is already given at line 22: remove one"},
		{"template with the mesh on", "198.18.0.12", tmpl, "", "datacenters[0].nodes[1].address", "node n2: address is a go-sockaddr template, but the mesh needs the node's own IPv4 address (its proxies and firewall rules are written with it): " + fix},
		{"template with the mesh explicitly on", "198.18.0.12", tmpl, "mesh: {enabled: true}\n", "datacenters[0].nodes[1].address", fix},
		{"template and ssh_host with the mesh on", "        address: 198.18.0.12", "        address: " + tmpl + "\n        ssh_host: n2.example.internal", "", "datacenters[0].nodes[1].address", fix},
		{"IPv6 with the mesh on", "198.18.0.12", "'2001:db8::12' # here", "", "datacenters[0].nodes[1].address", "node n2: address 2001:db8::12 is not an IPv4 address, which the mesh needs (its firewall and nat rules are IPv4): " + fix},
		{"IPv4-mapped IPv6 with the mesh on", "198.18.0.12", "'::ffff:198.18.0.12' # here", "", "datacenters[0].nodes[1].address", "write address as 198.18.0.12, or set mesh: {enabled: false}"},
		// Today's template rules, with the mesh off.
		{"template without ssh_host", "198.18.0.12", tmpl, noMesh, "datacenters[0].nodes[1].address", "set ssh_host"},
		{"template that does not parse", "        address: 198.18.0.12", "        address: '{{ GetPrivateInterfaces | nosuchfunc }}' # here\n        ssh_host: n2.example.internal", noMesh, "datacenters[0].nodes[1].address", "address template does not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := baseYAML
			if tt.old != "" {
				if !strings.Contains(doc, tt.old) {
					t.Fatalf("test bug: %q not in base", tt.old)
				}
				doc = strings.Replace(doc, tt.old, tt.new, 1)
			}
			expectProblem(t, doc+tt.tail, "# here", tt.field, tt.msg)
		})
	}
}

func TestValidateBuiltClusterMesh(t *testing.T) {
	build := func() *Cluster {
		return &Cluster{Name: "go", Datacenters: []Datacenter{{Name: "dc-1", Nodes: []*Node{
			{Name: "a", Address: "198.18.0.11", Components: []Component{ZooKeeper}},
			{Name: "b", Address: "198.18.0.12", Components: []Component{ZooKeeper}},
			{Name: "c", Address: "2001:db8::13", Components: []Component{ZooKeeper}},
		}}}}
	}
	// Built in code, the mesh is off unless Enabled is set.
	top, err := Validate(build())
	if err != nil {
		t.Fatal(err)
	}
	want := Mesh{UnitDir: DefaultUnitDir, ConsulBinary: DefaultConsulBinary, ProxyUser: DefaultProxyUser}
	if !reflect.DeepEqual(top.Cluster.Mesh, want) {
		t.Errorf("mesh = %+v, want %+v", top.Cluster.Mesh, want)
	}
	c := build()
	c.Mesh = Mesh{Enabled: true, Allow: []AllowRule{{From: Router, To: UI, Line: 42}}}
	c.Consul.User = "consul"
	_, err = Validate(c)
	if err == nil {
		t.Fatal("IPv6 address and allow rule to ui accepted with the mesh on")
	}
	for _, w := range []string{
		"datacenters[0].nodes[2].address: node c: address 2001:db8::13 is not an IPv4 address",
		"42: mesh.allow[0].to: ui has no mesh listener",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
	if c.Mesh.ProxyUser != "consul" {
		t.Errorf("proxy user = %q, want consul.user", c.Mesh.ProxyUser)
	}
}

func TestImportEnablesMesh(t *testing.T) {
	im := importFile(t, "testdata/silent-5.conf")
	if !im.Cluster.Mesh.Enabled {
		t.Error("imported cluster has the mesh off")
	}
	out, err := Marshal(im.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "mesh:") {
		t.Errorf("import writes a mesh block:\n%s", out)
	}
	merged, err := MergeImports(importFile(t, "testdata/silent-dc1.conf"), importFile(t, "testdata/silent-dc2.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !merged.Cluster.Mesh.Enabled {
		t.Error("merged import has the mesh off")
	}
}
