package inventory

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func addFileSeeds(f *testing.F, pattern string) {
	paths, err := filepath.Glob(pattern)
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParse: Parse never panics, fails only with a *ValidationError, and what
// it accepts survives Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	addFileSeeds(f, "../examples/*.yaml")
	f.Add([]byte(baseYAML))
	f.Add([]byte(baseYAML + "mesh:\n  proxy_user: consul\n  allow:\n    - {from: router, to: qpid}\n"))
	f.Add([]byte(strings.Replace(baseYAML, "postgres: 10300-10399", "egress: 10700-10700\n  openldap: 10200-10200", 1) + "mesh: {enabled: false}\n"))
	f.Add([]byte(baseYAML + "certs:\n  days: 90\n"))
	f.Add([]byte(strings.Replace(baseYAML, "postgres: 10300-10399", "router: 8080-8180\n  openldap: 10389-10389", 1)))
	for _, g := range validationGaps { // issue 8, item 7
		f.Add([]byte(g.doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		top, err := Parse("fuzz.yaml", data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("error is not a *ValidationError with problems: %v", err)
			}
			return
		}
		if _, err := AssignPorts(top, nil); err != nil {
			t.Fatalf("valid topology but AssignPorts: %v", err)
		}
		checkAccepted(t, top)
		checkRoundTrip(t, top)
	})
}

// silentBadSeeds are silent configs that once got through, or were refused
// without a line: not UTF-8 text, unreachable addresses, doubling
// references.
var silentBadSeeds = []string{
	silentBase + "REGION=d\xffc\n",
	"# r\xe9gion\n" + silentBase,
	silentBase + "ALL_IP=\"198.18.0.11\x00\"\n",
	"\xff\xfeA\x00L\x00L\x00",
	strings.Replace(silentBase, "198.18.0.13\"", "198.18.0.13 255.255.255.255 169.254.0.14 fe80::15 224.0.0.16\"", 1),
	silentBase + "APIGEE_MTLS_MULTI_DC_ENABLE=y\nMTLS_REMOTE_REGION_1_NAME=dc-2\nMTLS_REMOTE_REGION_1_IP=169.254.1.1\n",
	"A=xx\nA=\"$A$A\"\nA=\"$A$A\"\nB=\"${A}$A\"\n" + silentBase,
}

// checkAccepted asserts what issue 8 (item 7) requires of every accepted
// cluster: node paths the node scripts carry, addresses other nodes can
// reach, and a literal server address in every datacenter.
func checkAccepted(t *testing.T, top *Topology) {
	t.Helper()
	c := top.Cluster
	for _, p := range []string{c.Consul.ConfigDir, c.Consul.TLSDir, c.Consul.DataDir, c.NodeStateDir, c.Mesh.UnitDir, c.Mesh.ConsulBinary} {
		if !nodePathOK(p) {
			t.Fatalf("accepted node path %q: %s", p, nodePathProblem(p))
		}
	}
	for _, d := range []string{c.Consul.ConfigDir, c.Consul.TLSDir, c.Consul.DataDir} {
		if d == c.NodeStateDir || within(d, c.NodeStateDir) || within(c.NodeStateDir, d) {
			t.Fatalf("accepted node_state_dir %s with %s", c.NodeStateDir, d)
		}
	}
	literal := map[string]bool{}
	for _, n := range top.Nodes {
		if n.IsTemplate() {
			continue
		}
		ip, err := parseIP(n.Address)
		if err != nil || notNodeAddress(ip) != "" {
			t.Fatalf("accepted node %s address %q", n.Name, n.Address)
		}
		if n.IsServer() {
			literal[n.Datacenter] = true
		}
	}
	for _, dc := range c.Datacenters {
		if !literal[dc.Name] {
			t.Fatalf("accepted datacenter %s without a server address to join", dc.Name)
		}
	}
}

// FuzzImportApigee: ImportApigee never panics, and what it accepts marshals
// to a cluster file that Parse accepts unchanged.
func FuzzImportApigee(f *testing.F) {
	addFileSeeds(f, "testdata/*.conf")
	f.Add([]byte(silentBase))
	// Issue 9: region splits, sidecars off, certificate days.
	f.Add([]byte(silentTwoRegions))
	f.Add([]byte(silentTwoRegions + "ENABLE_SIDECAR_PROXY=n\nAPIGEE_MTLS_NUM_DAYS_CERT_VALID_FOR=90\n"))
	f.Add([]byte(strings.Replace(silentTwoRegions, "MTLS_LOCAL_REGION_IP=", "UNUSED=", 1)))
	f.Add([]byte(silentBase + "SMI_PROXY_MINIMUM_ROUTER_PROXY_PORT=8080\nSMI_PROXY_MAXIMUM_ROUTER_PROXY_PORT=8180\n"))
	for _, seed := range silentBadSeeds { // issue 8, items 6 and 7
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		im, err := ImportApigee("fuzz.conf", data)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) == 0 {
				t.Fatalf("error is not a *ValidationError with problems: %v", err)
			}
			return
		}
		out, err := Marshal(im.Cluster)
		if err != nil {
			t.Fatal(err)
		}
		top, err := Parse("imported.yaml", out)
		if err != nil {
			t.Fatalf("import does not parse back: %v\n%s", err, out)
		}
		if !sameCluster(im.Cluster, top.Cluster) {
			t.Fatalf("round trip changed the cluster:\n%s", out)
		}
	})
}
