package inventory

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// testGossipKey is the ENCRYPT_DATA of the testdata silent configs.
const testGossipKey = "c2VjcmV0LXRlc3Qta2V5LTMyLWJ5dGVzLWZvci1jb24="

func importFile(t *testing.T, path string) *Import {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	im, err := ImportApigee(path, data)
	if err != nil {
		t.Fatalf("ImportApigee(%s): %v", path, err)
	}
	return im
}

// roundTrip marshals an import's cluster and parses it back.
func roundTrip(t *testing.T, im *Import) *Topology {
	t.Helper()
	out, err := Marshal(im.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	top, err := Parse("imported.yaml", out)
	if err != nil {
		t.Fatalf("Parse(Marshal(import)): %v\n%s", err, out)
	}
	if !sameCluster(im.Cluster, top.Cluster) {
		t.Fatalf("round trip changed the cluster:\n%s", out)
	}
	return top
}

func TestImportApigee5(t *testing.T) {
	im := importFile(t, "testdata/silent-5.conf")
	if im.GossipKey != testGossipKey {
		t.Error("ENCRYPT_DATA not captured") // never print the key
	}
	if im.CACertPath != "/opt/apigee/mtls/consul-agent-ca.pem" || im.CAKeyPath != "/opt/apigee/mtls/consul-agent-ca-key.pem" {
		t.Errorf("CA paths = %q, %q", im.CACertPath, im.CAKeyPath)
	}
	if im.Cluster.Certs.Days != 730 {
		t.Errorf("certs.days = %d", im.Cluster.Certs.Days)
	}
	if len(im.Warnings) != 0 {
		t.Errorf("warnings: %q", im.Warnings)
	}
	top := roundTrip(t, im)
	want := map[string][]Component{
		"node-198-18-0-11": {ZooKeeper, Cassandra, OpenLDAP, ManagementServer},
		"node-198-18-0-12": {ZooKeeper, Cassandra, MessageProcessor, Router},
		"node-198-18-0-13": {ZooKeeper, Cassandra, MessageProcessor, Router},
		"node-198-18-0-14": {Postgres, Qpid},
		"node-198-18-0-15": {Postgres, Qpid},
	}
	if len(top.Nodes) != len(want) {
		t.Fatalf("%d nodes, want %d", len(top.Nodes), len(want))
	}
	for name, comps := range want {
		n := top.Node(name)
		if n == nil || !slices.Equal(n.Components, comps) {
			t.Errorf("node %s = %+v, want components %v", name, n, comps)
		}
	}
	if top.Cluster.Name != DefaultImportCluster || top.Cluster.Datacenters[0].Name != "dc-1" {
		t.Errorf("cluster %q dc %q", top.Cluster.Name, top.Cluster.Datacenters[0].Name)
	}
	if top.Cluster.Ports["postgres"].String() != "10300-10399" {
		t.Errorf("ports = %v", top.Cluster.Ports)
	}
}

func TestImportApigee13CustomPorts(t *testing.T) {
	im := importFile(t, "testdata/silent-13.conf")
	top := roundTrip(t, im)
	if len(top.Nodes) != 13 || len(top.Servers("dc-1")) != 3 {
		t.Fatalf("%d nodes, %d servers", len(top.Nodes), len(top.Servers("dc-1")))
	}
	for _, key := range PortKeys() {
		if r := top.Cluster.Ports[key]; r.Min < 20000 || r.Max > 20799 {
			t.Errorf("%s range %s not imported", key, r)
		}
	}
	a, err := AssignPorts(top, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkAssignment(t, top, a)
	if got := a.Ports("node-198-18-0-23", "postgres"); !slices.Equal(got, []int{20303, 20304, 20305}) {
		t.Errorf("second postgres node = %v", got)
	}
	if im.GossipKey != testGossipKey || im.Cluster.Certs.Days != 365 {
		t.Error("ENCRYPT_DATA or days not captured")
	}
}

// The two-region files are written as Apigee's documentation writes them:
// each lists both regions' hosts, and the region lists split them. Either
// file alone, or both, gives the same two datacenters (issue 9, item 1).
func TestImportApigeeTwoRegions(t *testing.T) {
	dc1 := importFile(t, "testdata/silent-dc1.conf")
	dc2 := importFile(t, "testdata/silent-dc2.conf")
	merged, err := MergeImports(dc1, dc2)
	if err != nil {
		t.Fatal(err)
	}
	reversed, err := MergeImports(dc2, dc1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		im    *Import
		order []string
	}{
		{"dc1 alone", dc1, []string{"dc-1", "dc-2"}},
		{"dc2 alone", dc2, []string{"dc-2", "dc-1"}},
		{"both", merged, []string{"dc-1", "dc-2"}},
		{"both, dc2 first", reversed, []string{"dc-2", "dc-1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.im.Warnings) != 0 {
				t.Errorf("warnings = %q", tt.im.Warnings)
			}
			top := roundTrip(t, tt.im)
			var names []string
			for _, dc := range top.Cluster.Datacenters {
				names = append(names, dc.Name)
			}
			if !slices.Equal(names, tt.order) || len(top.Nodes) != 12 {
				t.Fatalf("datacenters %v, %d nodes", names, len(top.Nodes))
			}
			for _, n := range top.Nodes {
				want := "dc-1"
				if strings.HasPrefix(n.Address, "198.18.0.2") {
					want = "dc-2"
				}
				if n.Datacenter != want {
					t.Errorf("node %s in %s, want %s", n.Address, n.Datacenter, want)
				}
			}
			for _, dc := range []string{"dc-1", "dc-2"} {
				var servers []string
				for _, s := range top.Servers(dc) {
					servers = append(servers, s.Address)
				}
				if len(servers) != 3 {
					t.Errorf("%s servers = %v", dc, servers)
				}
			}
			if n := top.Node("node-198-18-0-21"); n == nil || !slices.Equal(n.Components, []Component{ZooKeeper, Cassandra, OpenLDAP, ManagementServer}) {
				t.Errorf("node 198.18.0.21 = %+v", n)
			}
			a, err := AssignPorts(top, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkAssignment(t, top, a)
			if tt.im.GossipKey != testGossipKey || tt.im.CACertPath != "/root/mtls/consul-agent-ca.pem" {
				t.Error("credentials settings lost")
			}
		})
	}
	if !slices.Equal(merged.Sources, []string{"testdata/silent-dc1.conf", "testdata/silent-dc2.conf"}) {
		t.Errorf("sources = %q", merged.Sources)
	}
	// The inputs are left alone.
	if len(dc1.Cluster.Datacenters[0].Nodes) != 6 || &dc1.Cluster.Datacenters[0].Nodes[0] == &merged.Cluster.Datacenters[0].Nodes[0] {
		t.Error("MergeImports changed its input")
	}
}

// silentTwoRegions is a two-region file in Apigee's shape, with one server
// per region less than the testdata (three hosts per region).
const silentTwoRegions = `ALL_IP="198.18.0.11 198.18.0.12 198.18.0.13 198.18.0.21 198.18.0.22 198.18.0.23"
ZK_MTLS_HOSTS="198.18.0.11 198.18.0.12 198.18.0.13 198.18.0.21 198.18.0.22 198.18.0.23"
REGION=DC-East
APIGEE_MTLS_MULTI_DC_ENABLE=y
MTLS_LOCAL_REGION_IP="198.18.0.11 198.18.0.12 198.18.0.13"
MTLS_REMOTE_REGION_1_NAME=DC-West
MTLS_REMOTE_REGION_1_IP="198.18.0.21 198.18.0.22 198.18.0.23"
`

func TestImportApigeeRegionNames(t *testing.T) {
	im, err := ImportApigee("r.conf", []byte(silentTwoRegions))
	if err != nil {
		t.Fatal(err)
	}
	top := roundTrip(t, im)
	if got := []string{top.Cluster.Datacenters[0].Name, top.Cluster.Datacenters[1].Name}; !slices.Equal(got, []string{"dc-east", "dc-west"}) {
		t.Errorf("datacenters = %v", got)
	}
}

func TestImportApigeeRegionErrors(t *testing.T) {
	tests := []struct {
		name, old, new string
		line           int
		field, msg     string
	}{
		{"host in no region", `REMOTE_REGION_1_IP="198.18.0.21 198.18.0.22 198.18.0.23"`, `REMOTE_REGION_1_IP="198.18.0.21 198.18.0.22"`, 1, "ALL_IP", "198.18.0.23 is in no region's list: add it to MTLS_LOCAL_REGION_IP or to MTLS_REMOTE_REGION_1_IP"},
		{"host in both regions", `REMOTE_REGION_1_IP="198.18.0.21`, `REMOTE_REGION_1_IP="198.18.0.13 198.18.0.21`, 7, "MTLS_REMOTE_REGION_1_IP", "198.18.0.13 is also in MTLS_LOCAL_REGION_IP: a host belongs to one region"},
		{"region host not in ALL_IP", `LOCAL_REGION_IP="198.18.0.11`, `LOCAL_REGION_IP="198.18.0.99 198.18.0.11`, 5, "MTLS_LOCAL_REGION_IP", "198.18.0.99 is not in ALL_IP"},
		{"remote without hosts", `MTLS_REMOTE_REGION_1_IP="198.18.0.21 198.18.0.22 198.18.0.23"`, `MTLS_REMOTE_REGION_1_IP=""`, 6, "MTLS_REMOTE_REGION_1_NAME", "region dc-west has no MTLS_REMOTE_REGION_1_IP: list its hosts there"},
		{"remote name not a label", "=DC-West", "=DC_West", 6, "MTLS_REMOTE_REGION_1_NAME", "must be a DNS label"},
		{"remote name is the local one", "=DC-West", "=dc-east", 6, "MTLS_REMOTE_REGION_1_NAME", `region "dc-east" is already named by REGION`},
		{"region list not an IP", `LOCAL_REGION_IP="198.18.0.11`, `LOCAL_REGION_IP="east-1 198.18.0.11`, 5, "MTLS_LOCAL_REGION_IP", `"east-1" is not an IP address`},
		{"unsplit remote inside ALL_IP", "MTLS_LOCAL_REGION_IP=", "MTLS_OTHER=", 7, "MTLS_REMOTE_REGION_1_IP", "MTLS_LOCAL_REGION_IP is not set, so ALL_IP cannot be split"},
		{"too few servers in one region", `ZK_MTLS_HOSTS="198.18.0.11 198.18.0.12 198.18.0.13 198.18.0.21 198.18.0.22 198.18.0.23"`, `ZK_MTLS_HOSTS="198.18.0.11 198.18.0.12 198.18.0.13 198.18.0.21 198.18.0.22"`, 2, "ZK_MTLS_HOSTS", `datacenter "dc-west" has 2 Consul server(s)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := strings.Replace(silentTwoRegions, tt.old, tt.new, 1)
			if data == silentTwoRegions {
				t.Fatal("test case changes nothing")
			}
			_, err := ImportApigee("r.conf", []byte(data))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want *ValidationError", err)
			}
			for _, p := range ve.Problems {
				if p.Field == tt.field && strings.Contains(p.Msg, tt.msg) {
					if p.Line != tt.line {
						t.Errorf("line %d, want %d: %s", p.Line, tt.line, p)
					}
					return
				}
			}
			t.Errorf("no problem %s: %q in:\n%v", tt.field, tt.msg, err)
		})
	}
}

func TestMergeImportsErrors(t *testing.T) {
	base := readFile(t, "testdata/silent-dc1.conf")
	other := readFile(t, "testdata/silent-dc2.conf")
	tests := []struct {
		name   string
		a, b   string
		want   string
		absent string
	}{
		{"regions described differently", base, strings.Replace(other, `LDAP_MTLS_HOSTS="$IP1 $IP7"`, `LDAP_MTLS_HOSTS="$IP2 $IP7"`, 1), `a.conf and b.conf describe region "dc-1" differently (host 198.18.0.11 runs different components)`, ""},
		{"sidecars in one file only", base, other + "ENABLE_SIDECAR_PROXY=n\n", `ENABLE_SIDECAR_PROXY: a.conf sets "y" but b.conf sets "n"`, ""},
		{"different gossip keys", base, strings.Replace(other, testGossipKey, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", 1), "ENCRYPT_DATA: a.conf and b.conf set different values", testGossipKey},
		{"different port ranges", base, other + "SMI_PROXY_MINIMUM_EGRESS_PROXY_PORT=11700\nSMI_PROXY_MAXIMUM_EGRESS_PROXY_PORT=11799\n", `a.conf sets "10700-10799" but b.conf sets "11700-11799"`, ""},
		{"different CA paths", base, strings.Replace(other, "/root/mtls/consul-agent-ca.pem", "/tmp/ca.pem", 1), "PATH_TO_CA_CERT", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ImportApigee("a.conf", []byte(tt.a))
			if err != nil {
				t.Fatal(err)
			}
			b, err := ImportApigee("b.conf", []byte(tt.b))
			if err != nil {
				t.Fatal(err)
			}
			_, err = MergeImports(a, b)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if tt.absent != "" && strings.Contains(err.Error(), tt.absent) {
				t.Error("error reveals a secret")
			}
		})
	}
	if _, err := MergeImports(); err == nil {
		t.Error("empty merge accepted")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const silentBase = `ALL_IP="198.18.0.11 198.18.0.12 198.18.0.13"
ZK_MTLS_HOSTS="198.18.0.11 198.18.0.12 198.18.0.13"
CASS_MTLS_HOSTS="198.18.0.11 198.18.0.12 198.18.0.13"
PG_MTLS_HOSTS=198.18.0.13
`

func TestImportApigeeErrors(t *testing.T) {
	tests := []struct {
		name   string
		extra  string // appended to silentBase, or replaces it when base is false
		noBase bool
		line   int
		field  string
		msg    string
	}{
		{"malformed line", "this is not an assignment\n", false, 5, "", "not a KEY=VALUE line"},
		{"bad key", "1KEY=x\n", false, 5, "", "not a KEY=VALUE line"},
		{"invalid IP", "RT_MTLS_HOSTS=\"198.18.0.11 198.18.0.999\"\n", false, 5, "RT_MTLS_HOSTS", `"198.18.0.999" is not an IP address`},
		{"host not in ALL_IP", "MP_MTLS_HOSTS=198.18.0.50\n", false, 5, "MP_MTLS_HOSTS", "198.18.0.50 is not in ALL_IP: add it to ALL_IP or remove it from MP_MTLS_HOSTS"},
		{"duplicate host", "", true, 1, "ALL_IP", "198.18.0.11 is listed twice"},
		{"min above max", "SMI_PROXY_MINIMUM_POSTGRES_PROXY_PORT=10399\nSMI_PROXY_MAXIMUM_POSTGRES_PROXY_PORT=10300\n", false, 5, "SMI_PROXY_MINIMUM_POSTGRES_PROXY_PORT", "minimum 10399 is above maximum 10300"},
		{"min above default max", "SMI_PROXY_MINIMUM_QPID_PROXY_PORT=10500\n", false, 5, "SMI_PROXY_MINIMUM_QPID_PROXY_PORT", "above the default maximum 10499"},
		{"max below default min", "SMI_PROXY_MAXIMUM_QPID_PROXY_PORT=10000\n", false, 5, "SMI_PROXY_MAXIMUM_QPID_PROXY_PORT", "below the default minimum 10400"},
		{"port not a number", "SMI_PROXY_MAXIMUM_EGRESS_PROXY_PORT=lots\n", false, 5, "SMI_PROXY_MAXIMUM_EGRESS_PROXY_PORT", `port "lots" is not a number`},
		{"range too small", "SMI_PROXY_MINIMUM_POSTGRES_PROXY_PORT=10300\nSMI_PROXY_MAXIMUM_POSTGRES_PROXY_PORT=10301\n", false, 5, "SMI_PROXY_MINIMUM_POSTGRES_PROXY_PORT", "has 2 ports but its nodes need 3"},
		{"command substitution used", "ALL_IP=$(cat hosts)\n", true, 1, "ALL_IP", "command substitution ($(...)) is not evaluated"},
		{"undefined reference", "ALL_IP=\"$IP1 $IP2\"\n", true, 1, "ALL_IP", "refers to $IP1, which is not set earlier"},
		{"unquoted space", "ALL_IP=198.18.0.11 198.18.0.12\n", true, 1, "ALL_IP", "unquoted space"},
		{"unterminated quote", "ALL_IP=\"198.18.0.11\n", true, 1, "ALL_IP", "unterminated \" quote"},
		{"missing ALL_IP", "ZK_MTLS_HOSTS=198.18.0.11\n", true, 0, "ALL_IP", "ALL_IP is missing"},
		{"bad gossip key", "ENCRYPT_DATA=notbase64!\n", false, 5, "ENCRYPT_DATA", "not standard base64"},
		{"short gossip key", "ENCRYPT_DATA=c2hvcnQ=\n", false, 5, "ENCRYPT_DATA", "decodes to 5 bytes"},
		{"bad days", "APIGEE_MTLS_NUM_DAYS_CERT_VALID_FOR=forever\n", false, 5, "APIGEE_MTLS_NUM_DAYS_CERT_VALID_FOR", "not a number of days"},
		{"bad region", "REGION=dc_1\n", false, 5, "REGION", "must be a DNS label"},
		{"bad remote IP", "APIGEE_MTLS_MULTI_DC_ENABLE=y\nMTLS_REMOTE_REGION_1_NAME=dc-2\nMTLS_REMOTE_REGION_1_IP=nowhere\n", false, 7, "MTLS_REMOTE_REGION_1_IP", "is not an IP address"},
		{"fewer than 3 servers", "ALL_IP=\"198.18.0.11 198.18.0.12\"\nZK_MTLS_HOSTS=\"198.18.0.11 198.18.0.12\"\n", true, 2, "ZK_MTLS_HOSTS", "requires at least 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := silentBase + tt.extra
			if tt.noBase {
				data = tt.extra
			}
			if tt.name == "duplicate host" {
				data = strings.Replace(silentBase, `ALL_IP="198.18.0.11`, `ALL_IP="198.18.0.11 198.18.0.11`, 1)
			}
			_, err := ImportApigee("silent.conf", []byte(data))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want *ValidationError", err)
			}
			for _, p := range ve.Problems {
				if p.Field == tt.field && strings.Contains(p.Msg, tt.msg) {
					if p.Line != tt.line {
						t.Errorf("line %d, want %d: %s", p.Line, tt.line, p)
					}
					if strings.Contains(err.Error(), "notbase64!") || strings.Contains(err.Error(), "c2hvcnQ=") {
						t.Error("error reveals the gossip key")
					}
					if tt.line > 0 && !strings.Contains(err.Error(), fmt.Sprintf("silent.conf:%d: %s", tt.line, tt.field)) {
						t.Errorf("Error() lacks file:line: field:\n%v", err)
					}
					return
				}
			}
			t.Errorf("no problem %s: %q in:\n%v", tt.field, tt.msg, err)
		})
	}
}

func TestImportApigeeWarnings(t *testing.T) {
	data := silentBase + `export MTLS_ENCAPSULATE_LDAP=n
ENABLE_SIDECAR_PROXY='n'   # trailing comment
PATH_TO_CA_CERT=/ca.pem
EXTRA_HOST=198.18.0.14
ALL_IP="$ALL_IP ${EXTRA_HOST}"
MTLS_REMOTE_REGION_1_NAME=dc-2
`
	im, err := ImportApigee("w.conf", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(im.Warnings, "\n")
	if im.Cluster.Mesh.Enabled {
		t.Error("ENABLE_SIDECAR_PROXY=n left the mesh on")
	}
	if !im.Cluster.Mesh.LDAPOutside {
		t.Error("MTLS_ENCAPSULATE_LDAP=n left LDAP in the mesh")
	}
	if y, err := Marshal(im.Cluster); err != nil || !strings.Contains(string(y), "encapsulate_ldap: false") {
		t.Errorf("the cluster file does not say encapsulate_ldap: false (%v):\n%s", err, y)
	}
	for _, want := range []string{"only one of PATH_TO_CA_CERT and PATH_TO_CA_KEY", "APIGEE_MTLS_MULTI_DC_ENABLE is not y", "remote region dc-2"} {
		if !strings.Contains(joined, want) {
			t.Errorf("warnings lack %q:\n%s", want, joined)
		}
	}
	// A host in ALL_IP and in no list becomes a node with no component.
	top := roundTrip(t, im)
	if n := top.Node("node-198-18-0-14"); n == nil || len(n.Components) != 0 {
		t.Errorf("extra host = %+v", n)
	}
	if im.GossipKey != "" || im.Cluster.Certs.Days != 0 {
		t.Error("absent settings not zero")
	}
}

func TestShellValue(t *testing.T) {
	vars := map[string]silentVar{"A": {value: "x y"}, "BAD": {err: "nope"}}
	tests := []struct{ in, want, err string }{
		{``, ``, ``},
		{`plain`, `plain`, ``},
		{`"double quoted"`, `double quoted`, ``},
		{`'single $A'`, `single $A`, ``},
		{`"$A-${A}"`, `x y-x y`, ``},
		{`$A`, `x y`, ``},
		{`"esc \"q\" \$A \\"`, `esc "q" $A \`, ``},
		{`a\ b`, `a b`, ``},
		{`val # comment`, `val`, ``},
		{`"a"'b'c`, `abc`, ``},
		{`cost$`, `cost$`, ``},
		{`$1`, `$1`, ``},
		{`$BAD`, ``, `cannot be evaluated: nope`},
		{`${A:-x}`, ``, `not a plain variable reference`},
		{"`date`", ``, `command substitution`},
		{`"x`, ``, `unterminated`},
		{`'x`, ``, `unterminated`},
		{`a;b`, ``, `shell syntax`},
		{`${A`, ``, `unterminated ${`},
	}
	for _, tt := range tests {
		got, msg := shellValue(tt.in, vars)
		if got != tt.want || !strings.Contains(msg, tt.err) || (tt.err == "") != (msg == "") {
			t.Errorf("shellValue(%q) = %q, %q; want %q, %q", tt.in, got, msg, tt.want, tt.err)
		}
	}
}

func TestShellValueGrowthBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("A=xxxxxxxxxxxxxxxx\n")
	for range 40 {
		b.WriteString("A=\"$A$A\"\n")
	}
	b.WriteString("ALL_IP=$A\n")
	_, err := ImportApigee("grow.conf", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "past 64 KiB") {
		t.Errorf("err = %v", err)
	}
}

// A silent config that expands without bound, or is huge, is refused with
// a line number, quickly and without the memory (issue 8).
func TestImportApigeeBoundsExpansion(t *testing.T) {
	var b strings.Builder
	b.WriteString("A=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n")
	for i := 0; i < 10; i++ { // A is 32 KB
		b.WriteString("A=\"$A$A\"\n")
	}
	for i := 0; i < 20000; i++ { // 20,000 copies of it: 640 MB without a bound
		fmt.Fprintf(&b, "B%d=\"$A\"\n", i)
	}
	_, err := ImportApigee("silent.conf", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "expand to more than") || !strings.Contains(err.Error(), "silent.conf:") {
		t.Fatalf("doubling lines: %v", err)
	}
	_, err = ImportApigee("big.conf", []byte(strings.Repeat("# padding\n", 200000)))
	if err == nil || !strings.Contains(err.Error(), "more than a silent config's") {
		t.Fatalf("2 MB file: %v", err)
	}
}
