package cmd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// run executes mtlsctl in-process and returns its exit code and output.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), append([]string{"mtlsctl"}, args...), strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func example(name string) string { return filepath.Join("..", "examples", name+".yaml") }

// treeHash hashes every file's path, mode and content under dir.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		line := p + " " + info.Mode().String()
		if d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			line += " " + hex.EncodeToString(sum[:])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:])
}

func TestValidateExamples(t *testing.T) {
	for _, name := range []string{"edge-5", "edge-9", "edge-12", "edge-13"} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := run(t, "-i", example(name), "inventory", "validate")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if !strings.Contains(out, "dc-1") {
				t.Errorf("topology output lacks the datacenter:\n%s", out)
			}
		})
	}
}

func TestValidateBadFileNamesLine(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "cluster.yaml")
	data, err := os.ReadFile(example("edge-5"))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data), "[postgres, qpid]", "[postgres, qpidd]", 1)
	if err := os.WriteFile(f, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "-i", f, "inventory", "validate")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.Contains(errOut, "cluster.yaml:") || !strings.Contains(errOut, `"qpidd"`) {
		t.Errorf("error should name file, line and the bad value:\n%s", errOut)
	}
}

func TestGenerateRenderPortsOffline(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	inv := example("edge-13")

	code, out, errOut := run(t, "-i", inv, "--state", state, "generate")
	if code != 0 {
		t.Fatalf("generate: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "13 node certificates: 13 created") {
		t.Errorf("generate output:\n%s", out)
	}
	before := treeHash(t, state)
	code, out, errOut = run(t, "-i", inv, "--state", state, "generate")
	if code != 0 {
		t.Fatalf("second generate: exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "nothing to do") {
		t.Errorf("second generate should change nothing:\n%s", out)
	}
	if after := treeHash(t, state); after != before {
		t.Error("second generate changed the state directory")
	}

	rendered := filepath.Join(dir, "out")
	if code, _, errOut = run(t, "-i", inv, "--state", state, "render", "--out", rendered); code != 0 {
		t.Fatalf("render: exit %d: %s", code, errOut)
	}
	again := filepath.Join(dir, "out2")
	if code, _, errOut = run(t, "-i", inv, "--state", state, "render", "--out", again); code != 0 {
		t.Fatalf("render: exit %d: %s", code, errOut)
	}
	// Same inputs, same bytes (paths differ only by the top directory).
	if a, b := treeHashRel(t, rendered), treeHashRel(t, again); a != b {
		t.Error("two renders of the same state differ")
	}
	// The CA key never leaves the state directory.
	caKey, err := os.ReadFile(filepath.Join(state, "ca", "consul-agent-ca-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	filepath.WalkDir(rendered, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			data, _ := os.ReadFile(p)
			if bytes.Contains(data, bytes.TrimSpace(caKey)[40:120]) {
				t.Errorf("%s contains the CA private key", p)
			}
		}
		return nil
	})
	if code, _, errOut = run(t, "-i", inv, "--state", state, "render", "--out", rendered); code == 0 || !strings.Contains(errOut, "not empty") {
		t.Errorf("render into a non-empty dir: exit %d, %s", code, errOut)
	}

	for _, format := range []string{"table", "json", "apigee-report"} {
		code, out, errOut := run(t, "-i", inv, "--state", state, "ports", "--format", format)
		if code != 0 {
			t.Fatalf("ports %s: exit %d: %s", format, code, errOut)
		}
		if format != "table" && !json.Valid([]byte(out)) {
			t.Errorf("ports --format %s is not JSON:\n%s", format, out)
		}
		if format == "apigee-report" && !strings.Contains(out, "datacenter_member") {
			t.Errorf("apigee report lacks datacenter_member:\n%s", out)
		}
	}
}

func treeHashRel(t *testing.T, dir string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	return treeHash(t, ".")
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad output", []string{"-o", "yaml", "inventory", "validate"}, "use text or json"},
		{"bad ports format", []string{"-i", example("edge-5"), "ports", "--format", "xml"}, "use table, json or apigee-report"},
		{"catalog with apigee-report", []string{"ports", "--catalog", "edge", "--format", "apigee-report"}, "a catalogue prints as table or json"},
		{"unknown catalog", []string{"ports", "--catalog", "cloud"}, "use edge or hybrid"},
		{"stray argument", []string{"-i", example("edge-5"), "inventory", "validate", "extra"}, "unexpected argument"},
		{"unknown flag", []string{"generate", "--nope"}, "nope"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := run(t, tc.args...)
			if code != 3 {
				t.Errorf("exit %d, want 3 (usage)", code)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q lacks %q", errOut, tc.want)
			}
		})
	}
}

func TestMissingInventory(t *testing.T) {
	code, _, errOut := run(t, "-i", filepath.Join(t.TempDir(), "nope.yaml"), "inventory", "validate")
	if code != 1 || !strings.Contains(errOut, "nope.yaml") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestDemo(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // the demo must not need (or read) ~/.ssh
	code, out, errOut := run(t, "demo", "--example", "edge-12")
	if code != 0 {
		t.Fatalf("demo: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"12 of 12 node(s) have changes to apply", "0 of 12 node(s) have changes to apply", "done: 12 nodes bootstrapped"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The sandbox's consul only records the call: the demo must not claim
	// that anything was validated.
	if strings.Contains(out+errOut, "validate passed") || !strings.Contains(errOut, "nothing was validated") {
		t.Errorf("demo progress should say the sandbox validated nothing:\n%s", errOut)
	}
}

func TestPlanUnreachableNodes(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	code, out, _ := run(t, "demo", "--dir", filepath.Join(dir, "sb"))
	if code != 0 {
		t.Fatalf("demo: exit %d\n%s", code, out)
	}
	// The sandbox's servers are gone once the demo returns: plan must say
	// which nodes it could not reach, not hang or panic.
	inv := filepath.Join(dir, "sb", "cluster.yaml")
	state := filepath.Join(dir, "sb", "state")
	code, out, errOut := run(t, "-i", inv, "--state", state, "plan", "--timeout", "2s")
	if code != 1 || !strings.Contains(out, "ERROR") {
		t.Errorf("plan against stopped nodes: exit %d\n%s\n%s", code, out, errOut)
	}
}

func TestImportApigeeKeepsItsSecrets(t *testing.T) {
	dir := t.TempDir()
	// A CA and gossip key made elsewhere (as Apigee's `consul tls ca create` would).
	other := filepath.Join(dir, "other-state")
	if code, _, errOut := run(t, "-i", example("edge-5"), "--state", other, "generate"); code != 0 {
		t.Fatalf("generate: %s", errOut)
	}
	gossip := "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
	silent := filepath.Join(dir, "silent.conf")
	conf := strings.Join([]string{
		silentHosts,
		"ENCRYPT_DATA=\"" + gossip + "\"",
		"PATH_TO_CA_CERT=" + filepath.Join(other, "ca", "consul-agent-ca.pem"),
		"PATH_TO_CA_KEY=" + filepath.Join(other, "ca", "consul-agent-ca-key.pem"),
		"",
	}, "\n")
	if err := os.WriteFile(silent, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, "cluster.yaml")
	state := filepath.Join(dir, "state")
	code, out, errOut := run(t, "-i", inv, "--state", state, "inventory", "import-apigee", silent)
	if code != 0 {
		t.Fatalf("import-apigee: exit %d: %s", code, errOut)
	}
	if strings.Contains(out+errOut, gossip) {
		t.Error("import printed the gossip key")
	}
	if code, _, errOut = run(t, "-i", inv, "inventory", "validate"); code != 0 {
		t.Fatalf("imported cluster file does not validate: %s", errOut)
	}
	// generate keeps the imported CA and key: same CA file, same gossip fingerprint.
	code, out, errOut = run(t, "-i", inv, "--state", state, "generate")
	if code != 0 {
		t.Fatalf("generate after import: %s", errOut)
	}
	if !regexpMatch(`gossip key\s+kept`, out) || !regexpMatch(`CA\s+kept`, out) {
		t.Errorf("generate replaced an imported secret:\n%s", out)
	}
	a, _ := os.ReadFile(filepath.Join(other, "ca", "consul-agent-ca.pem"))
	b, _ := os.ReadFile(filepath.Join(state, "ca", "consul-agent-ca.pem"))
	if !bytes.Equal(a, b) {
		t.Error("the state's CA is not the imported one")
	}
	// A second import must not overwrite the cluster file silently.
	if code, _, errOut = run(t, "-i", inv, "--state", state, "inventory", "import-apigee", silent); code == 0 || !strings.Contains(errOut, "--force") {
		t.Errorf("re-import over an existing file: exit %d, %s", code, errOut)
	}
}

// silentHosts are the host lines of a 5-node silent config (edge-5).
const silentHosts = `ALL_IP="198.18.0.11 198.18.0.12 198.18.0.13 198.18.0.14 198.18.0.15"
ZK_MTLS_HOSTS="198.18.0.11 198.18.0.12 198.18.0.13"
CASS_MTLS_HOSTS="198.18.0.11 198.18.0.12 198.18.0.13"
RT_MTLS_HOSTS="198.18.0.14"
MP_MTLS_HOSTS="198.18.0.14"
PG_MTLS_HOSTS="198.18.0.15"`

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

// A silent config whose CA is bad writes nothing: not the gossip key, not
// the state directory, not the cluster file (issue 8).
func TestImportApigeeBadCAWritesNothing(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other-state")
	if code, _, errOut := run(t, "-i", example("edge-5"), "--state", other, "generate"); code != 0 {
		t.Fatalf("generate: %s", errOut)
	}
	silent := filepath.Join(dir, "silent.conf")
	conf := strings.Join([]string{
		silentHosts,
		"ENCRYPT_DATA=\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"",
		// A leaf certificate (not a CA) with the CA's key: invalid.
		"PATH_TO_CA_CERT=" + filepath.Join(other, "nodes", "n1", "cert.pem"),
		"PATH_TO_CA_KEY=" + filepath.Join(other, "ca", "consul-agent-ca-key.pem"),
		"",
	}, "\n")
	if err := os.WriteFile(silent, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, "cluster.yaml")
	state := filepath.Join(dir, "state")
	code, _, errOut := run(t, "-i", inv, "--state", state, "inventory", "import-apigee", silent)
	if code == 0 || !strings.Contains(errOut, "PATH_TO_CA_CERT") || !strings.Contains(errOut, "not a CA") || !strings.Contains(errOut, "nothing was written") {
		t.Fatalf("import with a bad CA: exit %d: %s", code, errOut)
	}
	for _, p := range []string{state, inv} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s was written by a failed import (%v)", p, err)
		}
	}
}

// TestPortsCatalogFormats: -o json gives JSON, as for the port report
// (-o json with --format table is a usage error: TestPortsFormatAndOutput).
func TestPortsCatalogFormats(t *testing.T) {
	absent := filepath.Join(t.TempDir(), "absent.yaml")
	for _, tc := range []struct {
		name string
		args []string
		json bool
	}{
		{"table by default", []string{"ports", "--catalog", "hybrid"}, false},
		{"--format json", []string{"ports", "--catalog", "hybrid", "--format", "json"}, true},
		{"-o json", []string{"-o", "json", "ports", "--catalog", "hybrid"}, true},
		{"edge without a cluster file", []string{"-i", absent, "-o", "json", "ports", "--catalog", "edge"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if json.Valid([]byte(out)) != tc.json {
				t.Errorf("JSON %v, want %v:\n%s", !tc.json, tc.json, out)
			}
			if !tc.json && !strings.Contains(out, "GROUP") {
				t.Errorf("no table:\n%s", out)
			}
		})
	}
}

// APIGEE_MTLS_NUM_DAYS_CERT_VALID_FOR becomes certs.days, which generate
// uses when --cert-days is not given (issue 9, item 2).
func TestImportCertDaysDrivesGenerate(t *testing.T) {
	dir := t.TempDir()
	silent := filepath.Join(dir, "silent.conf")
	if err := os.WriteFile(silent, []byte(silentHosts+"\nAPIGEE_MTLS_NUM_DAYS_CERT_VALID_FOR=90\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, "cluster.yaml")
	state := filepath.Join(dir, "state")
	if code, _, errOut := run(t, "-i", inv, "--state", state, "inventory", "import-apigee", silent); code != 0 {
		t.Fatalf("import-apigee: exit %d: %s", code, errOut)
	}
	yml, err := os.ReadFile(inv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(yml), "certs:\n  days: 90\n") {
		t.Fatalf("cluster file lacks certs.days:\n%s", yml)
	}
	if code, _, errOut := run(t, "-i", inv, "--state", state, "generate"); code != 0 {
		t.Fatalf("generate: exit %d: %s", code, errOut)
	}
	pemData, err := os.ReadFile(filepath.Join(state, "nodes", "node-198-18-0-11", "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemData)
	if block == nil {
		t.Fatal("no PEM block in the node certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if days := cert.NotAfter.Sub(cert.NotBefore).Hours() / 24; days < 89 || days > 91 {
		t.Errorf("leaf valid for %.1f days, want 90", days)
	}
}
