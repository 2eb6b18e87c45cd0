package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const baseYAML = `cluster: edge
consul:
  version: "1.6.2"
ssh:
  user: root
ports:
  postgres: 10300-10399
datacenters:
  - name: dc-1
    nodes:
      - name: n1
        address: 198.18.0.11
        components: [zookeeper, cassandra]
      - name: n2
        address: 198.18.0.12
        components: [zookeeper, cassandra]
      - name: n3
        address: 198.18.0.13
        components: [zookeeper, cassandra, postgres]
`

// noMesh turns the mesh off when appended to baseYAML.
const noMesh = "mesh: {enabled: false}\n"

// lineOf returns the 1-based line of the first line containing marker.
func lineOf(t *testing.T, doc, marker string) int {
	t.Helper()
	for i, l := range strings.Split(doc, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("marker %q not in document", marker)
	return 0
}

func mustParse(t *testing.T, doc string) *Topology {
	t.Helper()
	top, err := Parse("cluster.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return top
}

func TestParseDefaults(t *testing.T) {
	top := mustParse(t, baseYAML)
	c := top.Cluster
	want := Consul{
		Version: "1.6.2", Domain: "consul", ConfigDir: "/etc/consul.d", TLSDir: "/etc/consul.d/tls",
		DataDir: "/opt/consul", ReloadCommand: "systemctl reload consul",
		RestartCommand: "systemctl restart consul", LogLevel: "INFO",
	}
	if c.Consul != want {
		t.Errorf("consul = %+v, want %+v", c.Consul, want)
	}
	if c.SSH.User != "root" || c.SSH.Port != 22 {
		t.Errorf("ssh = %+v, want root:22", c.SSH)
	}
	if c.NodeStateDir != "/var/lib/mtlsctl" {
		t.Errorf("node_state_dir = %q", c.NodeStateDir)
	}
	if c.Backups.Keep != DefaultBackupsKeep {
		t.Errorf("backups.keep = %d, want the default %d", c.Backups.Keep, DefaultBackupsKeep)
	}
	if !reflect.DeepEqual(c.Ports, DefaultRanges()) {
		t.Errorf("ports = %v, want the defaults", c.Ports)
	}
	if len(top.Nodes) != 3 || top.Nodes[2].Datacenter != "dc-1" || top.Nodes[2].Line != 17 {
		t.Errorf("nodes = %+v", top.Nodes)
	}
	if got := len(top.Servers("dc-1")); got != 3 {
		t.Errorf("servers = %d, want 3", got)
	}
	if top.MultiDC() {
		t.Error("MultiDC on one datacenter")
	}
}

func TestParseAllFields(t *testing.T) {
	doc := `cluster: prod
consul:
  version: "1.12.3"
  domain: example.internal
  config_dir: /etc/consul
  tls_dir: /etc/consul/tls
  data_dir: /var/consul
  reload_command: consul reload
  restart_command: service consul restart
  user: consul
  group: consul
  log_level: debug
ssh:
  user: deploy
  port: 2222
  identity_file: ~/.ssh/id
  known_hosts: ~/.ssh/kh
  bastion: jump@198.18.0.1:22
  sudo: true
ports:
  egress: 11700-11799
node_state_dir: /srv/mtlsctl
mesh:
  enabled: false
  unit_dir: /usr/lib/systemd/system
  consul_binary: /opt/consul/bin/consul
  proxy_user: consul-proxy
  allow:
    - {from: ui, to: router}
    - from: qpid
      to: qpid
datacenters:
  - name: dc-1
    nodes:
      - {name: a, address: 198.18.0.11, components: [zookeeper], ssh_port: 2200, ssh_user: admin}
      - {name: b, address: 198.18.0.12, components: [zookeeper]}
      - name: c
        address: '{{ GetPrivateInterfaces | attr "address" }}'
        ssh_host: c.example.internal
        components: [zookeeper]
`
	top := mustParse(t, doc)
	c := top.Cluster
	if c.Consul.Version != "1.12.3" || c.Consul.Group != "consul" || c.Consul.LogLevel != "debug" {
		t.Errorf("consul = %+v", c.Consul)
	}
	if !c.Consul.AtLeast(1, 12) {
		t.Error("AtLeast(1, 12) false for 1.12.3")
	}
	if c.SSH != (SSH{User: "deploy", Port: 2222, IdentityFile: "~/.ssh/id", KnownHosts: "~/.ssh/kh", Bastion: "jump@198.18.0.1:22", Sudo: true}) {
		t.Errorf("ssh = %+v", c.SSH)
	}
	if c.Ports[Egress] != (PortRange{11700, 11799}) || c.Ports["postgres"] != (PortRange{10300, 10399}) {
		t.Errorf("ports = %v", c.Ports)
	}
	wantMesh := Mesh{UnitDir: "/usr/lib/systemd/system", ConsulBinary: "/opt/consul/bin/consul", ProxyUser: "consul-proxy",
		Allow: []AllowRule{{From: UI, To: Router, Line: 29}, {From: Qpid, To: Qpid, Line: 30}}}
	if !reflect.DeepEqual(c.Mesh, wantMesh) {
		t.Errorf("mesh = %+v, want %+v", c.Mesh, wantMesh)
	}
	n := top.Node("a")
	if n.SSHPort != 2200 || n.SSHUser != "admin" {
		t.Errorf("node a = %+v", n)
	}
	if cn := top.Node("c"); !cn.IsTemplate() || cn.SSHHost != "c.example.internal" {
		t.Errorf("node c = %+v", cn)
	}
	checkRoundTrip(t, top)
}

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		name     string
		old, new string // replace old by new in baseYAML
		marker   string // the problem's line holds this ("" = line of new)
		field    string
		msg      string
	}{
		{"unknown component", "[zookeeper, cassandra, postgres]", "[zookeeper, cassandra, zookeper]", "", "datacenters[0].nodes[2].components[2]", `unknown component "zookeper" (did you mean "zookeeper"?); valid: zookeeper, cassandra`},
		{"unknown key", "  user: root", "  usr: root", "", "ssh.usr", `unknown key "usr" (did you mean "user"?)`},
		{"unknown top-level key", "cluster: edge", "cluster: edge\ndatacenter: x", "datacenter:", "datacenter", `unknown key "datacenter" (did you mean "datacenters"?)`},
		{"unknown node key", "        address: 198.18.0.12", "        address: 198.18.0.12\n        adress: x", "adress", "datacenters[0].nodes[1].adress", `unknown key "adress"`},
		{"duplicate key", "cluster: edge", "cluster: edge\ncluster: again", "again", "cluster", "given twice (first on line 1)"},
		{"duplicate node name", "name: n2", "name: n1 # here", "# here", "datacenters[0].nodes[1].name", `node name "n1" is already used by datacenters[0].nodes[0]`},
		{"duplicate address", "198.18.0.12", "198.18.0.11 # here", "# here", "datacenters[0].nodes[1].address", "address 198.18.0.11 is already used by datacenters[0].nodes[0]"},
		{"duplicate address ipv4-mapped", "198.18.0.12", "'::ffff:198.18.0.11' # here", "# here", "datacenters[0].nodes[1].address", "already used"},
		{"invalid address", "198.18.0.12", "198.18.0.300 # here", "# here", "datacenters[0].nodes[1].address", `"198.18.0.300" is not an IP address`},
		{"host name address", "198.18.0.12", "db1.example.com # here", "# here", "datacenters[0].nodes[1].address", "host names are not accepted"},
		{"cidr address", "198.18.0.12", "198.18.0.0/24 # here", "# here", "datacenters[0].nodes[1].address", "is not an IP address"},
		{"unspecified address", "198.18.0.12", "0.0.0.0 # here", "# here", "datacenters[0].nodes[1].address", `"0.0.0.0" is the unspecified address`},
		{"missing address", "        address: 198.18.0.12\n", "", "name: n2", "datacenters[0].nodes[1].address", "has no address"},
		{"invalid node name", "name: n2", "name: N_2 # here", "# here", "datacenters[0].nodes[1].name", `node name "N_2" must be a DNS label`},
		{"node name with trailing dash", "name: n2", "name: n2- # here", "# here", "datacenters[0].nodes[1].name", "must be a DNS label"},
		{"node name too long", "name: n2", "name: " + long + " # here", "# here", "datacenters[0].nodes[1].name", "longer than 63"},
		{"missing node name", "      - name: n2\n        address", "      - address", "198.18.0.12", "datacenters[0].nodes[1].name", "node name is missing"},
		{"invalid datacenter name", "name: dc-1", "name: DC1 # here", "# here", "datacenters[0].name", `datacenter name "DC1" must be a DNS label`},
		{"invalid cluster name", "cluster: edge", "cluster: edge.prod # here", "# here", "cluster", `cluster name "edge.prod" must be a DNS label`},
		{"missing cluster name", "cluster: edge\n", "", "consul:", "cluster", "cluster name is missing"},
		{"fewer than 3 servers", "[zookeeper, cassandra, postgres]", "[cassandra, postgres]", "- name: dc-1", "datacenters[0]", "has 2 Consul server(s) (zookeeper nodes): Apigee mTLS requires at least 3"},
		{"duplicate component", "[zookeeper, cassandra, postgres]", "[zookeeper, cassandra, postgres, cassandra] # here", "# here", "datacenters[0].nodes[2].components[3]", "lists component cassandra twice"},
		{"component not a string", "[zookeeper, cassandra, postgres]", "[zookeeper, cassandra, {a: b}] # here", "# here", "datacenters[0].nodes[2].components[2]", "must be a single value"},
		{"datacenter without nodes", "datacenters:\n", "datacenters:\n  - name: dc-0 # here\n    nodes: []\n", "# here", "datacenters[0]", `datacenter "dc-0" has no nodes`},
		{"duplicate datacenter", "cassandra, postgres]\n", "cassandra, postgres]\n  - name: dc-1 # here\n    nodes: []\n", "# here", "datacenters[1].name", `datacenter "dc-1" is already defined at datacenters[0]`},
		{"no datacenters", "datacenters:", "datacenters: [] # here\nunused:", "# here", "datacenters", "no datacenters"},
		{"datacenters not a list", "datacenters:", "datacenters: x # here\nold:", "# here", "datacenters", "must be a list"},
		{"malformed range", "postgres: 10300-10399", "postgres: 10300..10399 # here", "# here", "ports.postgres", `"10300..10399" is not MIN-MAX`},
		{"range not numbers", "postgres: 10300-10399", "postgres: a-b # here", "# here", "ports.postgres", "two numbers"},
		{"range reversed", "postgres: 10300-10399", "postgres: 10399-10300 # here", "# here", "ports.postgres", "starts above its end"},
		{"backups keep zero", "cluster: edge", "cluster: edge\nbackups:\n  keep: 0 # here", "# here", "backups.keep", `keep "0" is not a whole number from 1`},
		{"backups keep negative", "cluster: edge", "cluster: edge\nbackups: {keep: -2} # here", "# here", "backups.keep", `keep "-2" is not a whole number from 1`},
		{"backups keep not a number", "cluster: edge", "cluster: edge\nbackups:\n  keep: three # here", "# here", "backups.keep", "whole number"},
		{"backups unknown key", "cluster: edge", "cluster: edge\nbackups:\n  kep: 2 # here", "# here", "backups.kep", `unknown key "kep" (did you mean "keep"?)`},
		{"range too small", "postgres: 10300-10399", "postgres: 10300-10301 # here", "# here", "ports.postgres", "has 2 ports but its nodes need 3 (3 per node): widen it, e.g. postgres: 10300-10399"},
		{"ranges overlap", "postgres: 10300-10399", "postgres: 10150-10249 # here", "# here", "ports.postgres", "postgres range 10150-10249 overlaps the cassandra range 10100-10199"},
		{"range overlaps a later default", "postgres: 10300-10399", "zookeeper: 10350-10449 # here", "# here", "ports.zookeeper", "zookeeper range 10350-10449 overlaps the postgres range 10300-10399"},
		{"range includes a Consul port", "postgres: 10300-10399", "postgres: 8000-8999 # here", "# here", "ports.postgres", "includes Consul's port 8300"},
		{"range privileged", "postgres: 10300-10399", "postgres: 80-400 # here", "# here", "ports.postgres", "outside 1024-65535"},
		{"range above 65535", "postgres: 10300-10399", "postgres: 65500-70000 # here", "# here", "ports.postgres", "outside 1024-65535"},
		{"range for management-server", "postgres: 10300-10399", "management-server: 11000-11099 # here", "# here", "ports.management-server", "needs no proxy ports"},
		{"unknown ports key", "postgres: 10300-10399", "postgress: 10300-10399 # here", "# here", "ports.postgress", `did you mean "postgres"`},
		{"version 2", `version: "1.6.2"`, `version: "2.0.0" # here`, "# here", "consul.version", "Consul 2.0.0 is not supported"},
		{"version too old", `version: "1.6.2"`, `version: "1.5.3" # here`, "# here", "consul.version", "too old"},
		{"version not semver", `version: "1.6.2"`, `version: 1.12 # here`, "# here", "consul.version", `"1.12" is not MAJOR.MINOR.PATCH`},
		{"version word", `version: "1.6.2"`, `version: latest # here`, "# here", "consul.version", "not MAJOR.MINOR.PATCH"},
		{"relative data_dir", `version: "1.6.2"`, "version: \"1.6.2\"\n  data_dir: opt/consul # here", "# here", "consul.data_dir", `path "opt/consul" must be absolute`},
		{"relative config_dir", `version: "1.6.2"`, "version: \"1.6.2\"\n  config_dir: consul.d # here", "# here", "consul.config_dir", "must be absolute"},
		{"relative tls_dir", `version: "1.6.2"`, "version: \"1.6.2\"\n  tls_dir: ./tls # here", "# here", "consul.tls_dir", "must be absolute"},
		{"relative node_state_dir", "cluster: edge", "cluster: edge\nnode_state_dir: var/lib/mtlsctl # here", "# here", "node_state_dir", "must be absolute"},
		{"bad log level", `version: "1.6.2"`, "version: \"1.6.2\"\n  log_level: loud # here", "# here", "consul.log_level", `log level "loud"`},
		{"bad domain", `version: "1.6.2"`, "version: \"1.6.2\"\n  domain: my_domain # here", "# here", "consul.domain", "must be a DNS label"},
		{"ssh port out of range", "  user: root", "  user: root\n  port: 70000 # here", "# here", "ssh.port", `port "70000" out of range`},
		{"ssh port zero", "  user: root", "  user: root\n  port: 0 # here", "# here", "ssh.port", "out of range"},
		{"node ssh_port out of range", "        address: 198.18.0.12", "        address: 198.18.0.12\n        ssh_port: -1 # here", "# here", "datacenters[0].nodes[1].ssh_port", "out of range"},
		{"ssh sudo not a bool", "  user: root", "  user: root\n  sudo: maybe # here", "# here", "ssh.sudo", "must be true or false"},
		{"consul not a mapping", "consul:\n  version: \"1.6.2\"", "consul: [1] # here", "# here", "consul", "must be a mapping"},
		{"two documents", "cluster: edge", "cluster: edge\n---\nx: 1", "---", "", "more than one YAML document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(baseYAML, tt.old) {
				t.Fatalf("test bug: %q not in base", tt.old)
			}
			doc := strings.Replace(baseYAML, tt.old, tt.new, 1)
			marker := tt.marker
			if marker == "" {
				marker = tt.new
			}
			expectProblem(t, doc, marker, tt.field, tt.msg)
		})
	}
}

// expectProblem parses doc and asserts a problem for field whose message
// contains msg, on the line holding marker, printed as file:line: field: msg.
func expectProblem(t *testing.T, doc, marker, field, msg string) {
	t.Helper()
	line := lineOf(t, doc, marker)
	_, err := Parse("cluster.yaml", []byte(doc))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse error = %v, want *ValidationError", err)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Error("errors.Is(err, ErrInvalid) is false")
	}
	for _, p := range ve.Problems {
		if p.Field == field && strings.Contains(p.Msg, msg) {
			if p.Line != line {
				t.Errorf("problem on line %d, want %d: %s", p.Line, line, p)
			}
			prefix := fmt.Sprintf("cluster.yaml:%d: ", line)
			if field != "" {
				prefix += field + ": "
			}
			if !strings.Contains(err.Error(), prefix+p.Msg) {
				t.Errorf("Error() lacks %q:\n%s", prefix+p.Msg, err)
			}
			return
		}
	}
	t.Errorf("no problem with field %q and message containing %q; got:\n%v", field, msg, err)
}

func TestParseDocumentErrors(t *testing.T) {
	tests := []struct {
		name, doc string
		line      int
		msg       string
	}{
		{"empty", "", 1, "the cluster file is empty"},
		{"only a comment", "# nothing\n", 1, "the cluster file is empty"},
		{"not yaml", "cluster: edge\ndatacenters:\n  - name: [\n", 3, "not valid YAML"},
		{"bad indentation", "cluster: a\n  b: c\n d: e\n", 2, "not valid YAML"},
		{"a list", "- a\n- b\n", 1, "must be a mapping"},
		{"a scalar", "hello\n", 1, "must be a mapping"},
		{"tab", "cluster:\tedge\n\tx: 1\n", 2, "not valid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tt.doc))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error = %v, want *ValidationError", err)
			}
			p := ve.Problems[0]
			if p.Line != tt.line || !strings.Contains(p.Msg, tt.msg) {
				t.Errorf("first problem = %s, want line %d and %q", p, tt.line, tt.msg)
			}
		})
	}
}

func TestParseCollectsAllProblems(t *testing.T) {
	doc := strings.NewReplacer(
		"zookeeper, cassandra, postgres", "zookeeper, cassandra, postgress",
		"198.18.0.12", "198.18.0.11",
		"  user: root", "  user: root\n  port: 99999",
		`version: "1.6.2"`, `version: "3.0.0"`,
	).Replace(baseYAML)
	_, err := Parse("cluster.yaml", []byte(doc))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	if len(ve.Problems) != 4 {
		t.Errorf("got %d problems, want 4:\n%v", len(ve.Problems), err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(ve.Problems) {
		t.Errorf("Error() has %d lines for %d problems", len(lines), len(ve.Problems))
	}
	for i := 1; i < len(ve.Problems); i++ {
		if ve.Problems[i].Line < ve.Problems[i-1].Line {
			t.Errorf("problems not sorted by line: %v", err)
		}
	}
}

func TestParseAliases(t *testing.T) {
	doc := `cluster: edge
datacenters:
  - name: dc-1
    nodes:
      - {name: n1, address: 198.18.0.11, components: &ds [zookeeper, cassandra]}
      - {name: n2, address: 198.18.0.12, components: *ds}
      - {name: n3, address: 198.18.0.13, components: *ds}
`
	top := mustParse(t, doc)
	if len(top.Servers("dc-1")) != 3 {
		t.Errorf("aliases not followed: %+v", top.Nodes)
	}
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	for i := 'b'; i <= 'j'; i++ {
		bomb += fmt.Sprintf("%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	bomb = "cluster: edge\ndatacenters:\n  - name: dc-1\n    nodes:\n      - name: n1\n        components: *j\nanchors:\n" + indent(bomb)
	// The anchors must come first for YAML; put them under a key the schema rejects.
	bomb = "x: &j [a]\n" + bomb
	if _, err := Parse("bomb.yaml", []byte(bomb)); err == nil {
		t.Error("alias bomb accepted")
	}
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimSuffix(s, "\n"), "\n", "\n  ") + "\n"
}

func TestValidateBuiltCluster(t *testing.T) {
	c := &Cluster{Name: "go", Datacenters: []Datacenter{{Name: "dc-1", Nodes: []*Node{
		{Name: "a", Address: "198.18.0.11", Components: []Component{ZooKeeper}},
		{Name: "b", Address: "198.18.0.12", Components: []Component{ZooKeeper}},
	}}}}
	_, err := Validate(c)
	if err == nil || !strings.Contains(err.Error(), "datacenters[0]: datacenter \"dc-1\" has 2 Consul server(s)") {
		t.Errorf("err = %v", err)
	}
	c.Datacenters[0].Nodes = append(c.Datacenters[0].Nodes, &Node{Name: "c", Address: "198.18.0.13", Components: []Component{ZooKeeper}})
	top, err := Validate(c)
	if err != nil {
		t.Fatal(err)
	}
	if top.Cluster.Consul.Version != DefaultConsulVersion || top.Nodes[2].Datacenter != "dc-1" {
		t.Errorf("defaults not applied: %+v", top.Cluster.Consul)
	}
}

func TestConsulVersionAtLeast(t *testing.T) {
	tests := []struct {
		v            string
		major, minor int
		want         bool
	}{
		{"1.6.2", 1, 12, false},
		{"1.12.0", 1, 12, true},
		{"1.11.9", 1, 12, false},
		{"1.20.1", 1, 12, true},
		{"v1.13.0-beta1", 1, 12, true},
		{"2.0.0", 1, 12, true},
		{"1.6.2", 1, 6, true},
		{"junk", 1, 0, false},
		{"1.12", 1, 12, false},
	}
	for _, tt := range tests {
		if got := ConsulVersionAtLeast(tt.v, tt.major, tt.minor); got != tt.want {
			t.Errorf("ConsulVersionAtLeast(%q, %d, %d) = %v, want %v", tt.v, tt.major, tt.minor, got, tt.want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(path, []byte(baseYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	top, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if top.Cluster.Source != path {
		t.Errorf("Source = %q", top.Cluster.Source)
	}
	bad := strings.Replace(baseYAML, "zookeeper, cassandra, postgres", "zookeeper, cassandra, zookeper", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":19: datacenters[0].nodes[2].components[2]: unknown component \"zookeper\"") {
		t.Errorf("err = %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) || !errors.Is(err, ErrNoClusterFile) {
		t.Errorf("missing file: err = %v", err)
	}
}

func TestDescribe(t *testing.T) {
	top := mustParse(t, baseYAML)
	var a, b bytes.Buffer
	if err := top.Describe(&a); err != nil {
		t.Fatal(err)
	}
	if err := top.Describe(&b); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Error("Describe is not deterministic")
	}
	want := `cluster edge: Consul 1.6.2, domain consul, 1 datacenter(s), 3 node(s)
  dc-1: 3 node(s), Consul servers: n1, n2, n3

DATACENTER  NODE  ADDRESS      SERVER  COMPONENTS
dc-1        n1    198.18.0.11  yes     zookeeper, cassandra
dc-1        n2    198.18.0.12  yes     zookeeper, cassandra
dc-1        n3    198.18.0.13  yes     zookeeper, cassandra, postgres
`
	if a.String() != want {
		t.Errorf("Describe =\n%s\nwant\n%s", a.String(), want)
	}
}

// checkRoundTrip asserts that Marshal then Parse gives back the same cluster.
func checkRoundTrip(t testing.TB, top *Topology) {
	t.Helper()
	out, err := Marshal(top.Cluster)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	again, err := Parse("marshalled.yaml", out)
	if err != nil {
		t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
	}
	if !sameCluster(top.Cluster, again.Cluster) {
		t.Fatalf("round trip changed the cluster:\n%s\nbefore: %+v\nafter:  %+v", out, top.Cluster, again.Cluster)
	}
}

// sameCluster compares two clusters, ignoring where they were read from.
func sameCluster(a, b *Cluster) bool {
	strip := func(c *Cluster) Cluster {
		cp := *c
		cp.Source = ""
		cp.Datacenters = nil
		for _, dc := range c.Datacenters {
			d := Datacenter{Name: dc.Name}
			for _, n := range dc.Nodes {
				nn := *n
				nn.Line = 0
				d.Nodes = append(d.Nodes, &nn)
			}
			cp.Datacenters = append(cp.Datacenters, d)
		}
		cp.Mesh.Allow = nil
		for _, r := range c.Mesh.Allow {
			r.Line = 0
			cp.Mesh.Allow = append(cp.Mesh.Allow, r)
		}
		return cp
	}
	return reflect.DeepEqual(strip(a), strip(b))
}

func TestMarshalOmitsDefaults(t *testing.T) {
	top := mustParse(t, baseYAML)
	out, err := Marshal(top.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, absent := range []string{"ports:", "domain:", "ssh:", "node_state_dir", "backups:", "mesh:"} {
		if strings.Contains(s, absent) {
			t.Errorf("default %q written:\n%s", absent, s)
		}
	}
	if !strings.Contains(s, "components: [zookeeper, cassandra, postgres]") || !strings.Contains(s, `version: "1.6.2"`) {
		t.Errorf("unexpected output:\n%s", s)
	}
	top.Cluster.Consul.Version = "1.10.0"
	checkRoundTrip(t, top)
}

func TestParseBackupsKeep(t *testing.T) {
	top := mustParse(t, "backups: {keep: 1}\n"+baseYAML)
	if got := top.Cluster.Backups.Keep; got != 1 {
		t.Errorf("backups.keep = %d, want 1", got)
	}
	out, err := Marshal(top.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "backups:\n  keep: 1\n") {
		t.Errorf("a non-default keep is not written:\n%s", out)
	}
	checkRoundTrip(t, top)
	c := mustParse(t, baseYAML).Cluster
	c.Backups.Keep = -1
	if _, err := Validate(c); err == nil || !strings.Contains(err.Error(), "backups.keep") {
		t.Errorf("Validate with keep -1: %v, want a backups.keep problem", err)
	}
}
