package inventory

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// gapCase is a cluster file that validation used to accept (or refuse
// without a line), with the problem it must now report: on the line
// holding marker, for field, with a message containing msg.
type gapCase struct {
	name   string
	doc    string
	marker string
	field  string
	msg    string
}

// with returns baseYAML with old replaced by new, then tail appended.
func with(old, new, tail string) string {
	if !strings.Contains(baseYAML, old) {
		panic(fmt.Sprintf("test bug: %q not in baseYAML", old))
	}
	return strings.Replace(baseYAML, old, new, 1) + tail
}

// withConsul adds lines to the consul block of baseYAML.
func withConsul(lines string) string {
	return with(`  version: "1.6.2"`, "  version: \"1.6.2\"\n"+lines, "")
}

// withTop adds lines at the top level of baseYAML.
func withTop(lines string) string { return with("cluster: edge", "cluster: edge\n"+lines, "") }

// allServerTemplates gives every server of baseYAML a go-sockaddr template
// address (and an ssh_host), with the mesh off.
func allServerTemplates() string {
	doc := baseYAML
	for _, ip := range []string{"198.18.0.11", "198.18.0.12", "198.18.0.13"} {
		doc = strings.Replace(doc, "address: "+ip,
			fmt.Sprintf("address: '{{ GetPrivateIP }}'\n        ssh_host: %s", ip), 1)
	}
	return doc + noMesh
}

// validationGaps are the inputs of issue 8, item 7. They also seed
// FuzzParse.
var validationGaps = []gapCase{
	// Addresses no other node can reach.
	{"broadcast address", with("198.18.0.12", "255.255.255.255 # here", ""), "# here", "datacenters[0].nodes[1].address", `address "255.255.255.255" is the IPv4 broadcast address, which cannot be a node's address`},
	{"IPv4 link-local", with("198.18.0.12", "169.254.10.12 # here", ""), "# here", "datacenters[0].nodes[1].address", `address "169.254.10.12" is link-local (169.254.0.0/16`},
	{"IPv6 link-local", with("198.18.0.12", "'fe80::12' # here", noMesh), "# here", "datacenters[0].nodes[1].address", `address "fe80::12" is link-local (fe80::/10`},
	{"IPv4 multicast", with("198.18.0.12", "224.0.0.251 # here", ""), "# here", "datacenters[0].nodes[1].address", "is a multicast address"},
	{"IPv6 multicast", with("198.18.0.12", "'ff02::1' # here", noMesh), "# here", "datacenters[0].nodes[1].address", "is a multicast address"},
	{"IPv6 unspecified", with("198.18.0.12", "'::' # here", noMesh), "# here", "datacenters[0].nodes[1].address", "is the unspecified address"},

	// '..', unclean and unsafe paths, in every path field.
	{"dot-dot config_dir", withConsul("  config_dir: /etc/consul.d/../passwd.d # here"), "# here", "consul.config_dir", `path "/etc/consul.d/../passwd.d" has a '..' segment: give the directory itself, e.g. /etc/passwd.d`},
	{"dot-dot tls_dir", withConsul("  tls_dir: /etc/consul.d/tls/.. # here"), "# here", "consul.tls_dir", "has a '..' segment"},
	{"dot-dot data_dir", withConsul("  data_dir: /opt/../consul # here"), "# here", "consul.data_dir", "has a '..' segment"},
	{"dot-dot node_state_dir", withTop("node_state_dir: /var/lib/../../etc # here"), "# here", "node_state_dir", "has a '..' segment"},
	{"dot-dot unit_dir", with("cluster: edge", "cluster: edge", "mesh:\n  unit_dir: /etc/systemd/../system # here\n"), "# here", "mesh.unit_dir", "has a '..' segment"},
	{"dot-dot consul_binary", with("cluster: edge", "cluster: edge", "mesh:\n  consul_binary: /usr/bin/../sbin/consul # here\n"), "# here", "mesh.consul_binary", "has a '..' segment: give the directory itself, e.g. /usr/sbin/consul"},
	{"trailing slash", withConsul("  tls_dir: /etc/consul.d/tls/ # here"), "# here", "consul.tls_dir", "is not in clean form (a trailing /, // or /./): write it as /etc/consul.d/tls"},
	{"double slash", withTop("node_state_dir: /var//lib/mtlsctl # here"), "# here", "node_state_dir", "write it as /var/lib/mtlsctl"},
	{"backslash in node_state_dir", withTop(`node_state_dir: '/var/lib\mtlsctl' # here`), "# here", "node_state_dir", `has a backslash, which the node scripts cannot carry`},
	{"backslash in config_dir", withConsul(`  config_dir: 'C:\consul' # here`), "# here", "consul.config_dir", "has a backslash"},
	{"tab in data_dir", withConsul(`  data_dir: "/opt/con\tsul" # here`), "# here", "consul.data_dir", "has a control character (U+0009 at byte offset 8), which the node scripts cannot carry"},
	{"newline in node_state_dir", withTop(`node_state_dir: "/var/lib/m\ntlsctl" # here`), "# here", "node_state_dir", "has a control character (U+000A"},
	{"space in node_state_dir with the mesh", withTop("node_state_dir: /var/lib/mtls ctl # here"), "# here", "node_state_dir", "has a character a systemd unit cannot carry unquoted (the firewall unit runs the script in it)"},
	{"dollar in node_state_dir with the mesh", withTop("node_state_dir: /var/lib/$STATE # here"), "# here", "node_state_dir", "a systemd unit cannot carry"},
	{"percent in unit_dir", with("cluster: edge", "cluster: edge", "mesh:\n  unit_dir: /etc/systemd/%i # here\n"), "# here", "mesh.unit_dir", "has a character systemd unit paths cannot carry"},

	// Managed directories that share or nest.
	{"tls_dir is node_state_dir", withConsul("  tls_dir: /var/lib/mtlsctl # here"), "# here", "consul.tls_dir", "node_state_dir (the default) and consul.tls_dir are both /var/lib/mtlsctl: node_state_dir must be a directory of its own"},
	{"node_state_dir is tls_dir", withTop("node_state_dir: /etc/consul.d/tls # here"), "# here", "node_state_dir", "node_state_dir and consul.tls_dir are both /etc/consul.d/tls"},
	{"node_state_dir is data_dir", withTop("node_state_dir: /opt/consul # here"), "# here", "node_state_dir", "node_state_dir and consul.data_dir are both /opt/consul"},
	{"node_state_dir is unit_dir", withTop("node_state_dir: /etc/systemd/system # here"), "# here", "node_state_dir", "node_state_dir and mesh.unit_dir are both"},
	{"node_state_dir holds config_dir", withTop("node_state_dir: /etc # here"), "# here", "node_state_dir", "consul.config_dir /etc/consul.d is inside node_state_dir /etc: node_state_dir must not hold another directory"},
	{"node_state_dir inside config_dir", withTop("node_state_dir: /etc/consul.d/mtlsctl # here"), "# here", "node_state_dir", "node_state_dir /etc/consul.d/mtlsctl is inside consul.config_dir /etc/consul.d: keep mtlsctl's node state in a root-only directory of its own"},
	{"node_state_dir inside data_dir", withTop("node_state_dir: /opt/consul/mtlsctl # here"), "# here", "node_state_dir", "is inside consul.data_dir /opt/consul"},
	{"data_dir holds the default node_state_dir", withConsul("  data_dir: /var/lib # here"), "# here", "consul.data_dir", "node_state_dir /var/lib/mtlsctl (the default) is inside consul.data_dir /var/lib"},
	{"data_dir is config_dir", withConsul("  data_dir: /etc/consul.d # here"), "# here", "consul.data_dir", "consul.data_dir and consul.config_dir are both /etc/consul.d: the data directory is Consul's own"},
	{"data_dir is tls_dir", withConsul("  data_dir: /etc/consul.d/tls # here"), "# here", "consul.data_dir", "consul.data_dir and consul.tls_dir are both"},
	{"consul_binary in node_state_dir", with("cluster: edge", "cluster: edge", "mesh:\n  consul_binary: /var/lib/mtlsctl/consul # here\n"), "# here", "mesh.consul_binary", "mesh.consul_binary /var/lib/mtlsctl/consul is inside node_state_dir /var/lib/mtlsctl (the default), which is root-only and deleted by uninstall"},

	// A datacenter no agent can join.
	{"all servers templates", allServerTemplates(), "- name: dc-1", "datacenters[0]", `datacenter "dc-1": all its Consul servers (zookeeper nodes) have go-sockaddr template addresses`},

	// Bytes that are not UTF-8 text: the line, column and offset.
	{"invalid UTF-8", with("name: n2", "name: n\xff2", ""), "name: n\xff2", "", "byte 0xff is not valid UTF-8 (column 16, byte offset 233)"},
	{"truncated UTF-8", with("name: n2", "name: n\xc3", ""), "name: n\xc3", "", "byte 0xc3 is not valid UTF-8 (column 16"},
	{"invalid UTF-8 after multibyte", with("cluster: edge", "cluster: edge # é \xe9", ""), "cluster: edge", "", "byte 0xe9 is not valid UTF-8 (column 19, byte offset 19)"},
	{"control character", with("name: n2", "name: \"n\x012\"", ""), "name: \"n", "", "character U+0001 is a control character, not text (column 17"},
	{"DEL", with("cluster: edge", "cluster: edge\x7f", ""), "cluster: edge", "", "character U+007F is a control character"},
	{"UTF-16", "\xff\xfec\x00l\x00u\x00", "c", "", "the file is UTF-16 (it starts with a byte-order mark): save it as UTF-8"},
}

func TestParseValidationGaps(t *testing.T) {
	for _, tt := range validationGaps {
		t.Run(tt.name, func(t *testing.T) {
			expectProblem(t, tt.doc, tt.marker, tt.field, tt.msg)
		})
	}
}

// TestParseAcceptsNearMisses: what the new checks must not refuse.
func TestParseAcceptsNearMisses(t *testing.T) {
	tests := []struct{ name, doc string }{
		{"tls_dir is config_dir", withConsul("  tls_dir: /etc/consul.d")},
		{"data_dir holds config_dir", withConsul("  data_dir: /opt/consul\n  config_dir: /opt/consul/config\n  tls_dir: /opt/consul/config/tls")},
		{"sibling directories with a common prefix", withTop("node_state_dir: /etc/consul.d-mtlsctl")},
		{"dots in names", withTop("node_state_dir: /var/lib/..mtlsctl../.state")},
		{"space in node_state_dir without the mesh", withTop("node_state_dir: '/var/lib/mtls ctl'") + noMesh},
		{"unit_dir is node_state_dir without the mesh", withTop("node_state_dir: /etc/systemd/system") + noMesh},
		{"non-ASCII UTF-8 and a BOM", "\xef\xbb\xbf" + with("cluster: edge", "cluster: edge # café ✓ 𝄞", "")},
		{"CRLF line ends", strings.ReplaceAll(baseYAML, "\n", "\r\n")},
		{"one server with an IP, two with templates", strings.Replace(strings.Replace(baseYAML,
			"address: 198.18.0.11", "address: '{{ GetPrivateIP }}'\n        ssh_host: h1", 1),
			"address: 198.18.0.12", "address: '{{ GetPrivateIP }}'\n        ssh_host: h2", 1) + noMesh},
		{"private, shared and public addresses", strings.NewReplacer("198.18.0.11", "10.0.0.11", "198.18.0.12", "100.64.0.12", "198.18.0.13", "203.0.113.13").Replace(baseYAML)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustParse(t, tt.doc)
		})
	}
}

func TestImportApigeeNotText(t *testing.T) {
	tests := []struct {
		name string
		data string
		line int
		msg  string
	}{
		{"invalid UTF-8 in a value", silentBase + "REGION=d\xffc\n", 5, "byte 0xff is not valid UTF-8 (column 9, byte offset"},
		{"invalid UTF-8 in a comment", "# r\xe9gion\n" + silentBase, 1, "byte 0xe9 is not valid UTF-8 (column 4, byte offset 3)"},
		{"control character", silentBase + "ALL_IP=\"198.18.0.11\x00\"\n", 5, "character U+0000 is a control character"},
		{"UTF-16", "\xff\xfeA\x00L\x00", 1, "the file is UTF-16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ImportApigee("silent.conf", []byte(tt.data))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want *ValidationError", err)
			}
			if len(ve.Problems) != 1 {
				t.Errorf("got %d problems, want 1 (nothing read past the bad byte):\n%v", len(ve.Problems), err)
			}
			p := ve.Problems[0]
			if p.Line != tt.line || !strings.Contains(p.Msg, tt.msg) {
				t.Errorf("problem %s, want line %d and %q", p, tt.line, tt.msg)
			}
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("silent.conf:%d: ", tt.line)) {
				t.Errorf("Error() lacks silent.conf:%d:\n%v", tt.line, err)
			}
		})
	}
}

// TestImportApigeeRefusesUnreachableAddresses: the importer checks hosts
// with the same rules as the cluster file.
func TestImportApigeeRefusesUnreachableAddresses(t *testing.T) {
	for _, ip := range []string{"255.255.255.255", "169.254.0.13", "fe80::13", "224.0.0.13", "0.0.0.0"} {
		t.Run(ip, func(t *testing.T) {
			data := strings.Replace(silentBase, `ALL_IP="198.18.0.11 198.18.0.12 198.18.0.13"`, `ALL_IP="198.18.0.11 198.18.0.12 198.18.0.13 `+ip+`"`, 1)
			_, err := ImportApigee("silent.conf", []byte(data))
			if err == nil || !strings.Contains(err.Error(), "silent.conf:1: ALL_IP: address \""+ip+"\" is ") || !strings.Contains(err.Error(), "cannot be a node's address") {
				t.Errorf("err = %v, want ALL_IP on line 1 refusing %s", err, ip)
			}
		})
	}
}
