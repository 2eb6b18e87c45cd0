package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// TestJSONDocumentsMatchSchema runs commands with -o json, on success and
// on failure, and checks every document against the schema documented in
// docs/json (one document on stdout, its schema_version and kind first).
func TestJSONDocumentsMatchSchema(t *testing.T) {
	schemaPath := filepath.Join("..", "docs", "json", "mtlsctl.schema.json")
	f, err := os.Open(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", schemaPath, err)
	}
	comp := jsonschema.NewCompiler()
	if err := comp.AddResource("mtlsctl.schema.json", raw); err != nil {
		t.Fatal(err)
	}
	schema, err := comp.Compile("mtlsctl.schema.json")
	if err != nil {
		t.Fatalf("%s: %v", schemaPath, err)
	}

	inv, state := sandboxCluster(t)
	at := func(args ...string) []string {
		return append([]string{"-i", inv, "--state", state, "-o", "json"}, args...)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("cluster: x\ndatacenters:\n  - name: dc1\n    nodes:\n      - name: n1\n        address: 300.1.1.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		kind string
	}{
		{"validate", at("inventory", "validate"), 0, "inventory-validate"},
		{"validate, -o after the command", []string{"-i", inv, "inventory", "validate", "-o", "json"}, 0, "inventory-validate"},
		{"generate", at("generate"), 0, "generate"},
		{"ports", at("ports"), 0, "ports"},
		{"ports catalog", at("ports", "--catalog", "edge"), 0, "ports-catalog"},
		{"render", at("render", "--out", filepath.Join(dir, "rendered")), 0, "render"},
		{"plan", at("plan", "--skip-live"), 0, "plan"},
		{"apply", at("apply", "--yes", "--skip-live"), 0, "apply"},
		{"status", at("status", "--skip-live"), 0, "status"},
		{"check-expiration", at("certs", "check-expiration"), 0, "certs-check-expiration"},
		{"check-expiration --remote", at("certs", "check-expiration", "--remote"), 0, "certs-check-expiration"},
		{"invalid cluster file", []string{"-i", bad, "-o", "json", "inventory", "validate"}, 1, "error"},
		{"missing cluster file", []string{"-i", filepath.Join(dir, "nope.yaml"), "-o", "json", "plan"}, 1, "error"},
		{"unknown command", []string{"-o", "json", "plna"}, 3, "error"},
		{"unknown flag", at("plan", "--nope"), 3, "error"},
		{"unknown node", at("plan", "--nodes", "n9"), 3, "error"},
		{"import with no file", at("inventory", "import-apigee"), 3, "error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s\n%s", code, tc.code, out, errOut)
			}
			inst, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
			if err != nil {
				t.Fatalf("stdout is not one JSON document: %v\n%s", err, out)
			}
			if err := schema.Validate(inst); err != nil {
				t.Fatalf("does not match %s: %v\n%s", schemaPath, err, out)
			}
			if m, _ := inst.(map[string]any); m["kind"] != tc.kind {
				t.Errorf("kind %v, want %s", m["kind"], tc.kind)
			}
			if !strings.HasPrefix(out, "{\n  \"schema_version\": 1,\n  \"kind\": ") {
				t.Errorf("the document does not start with its schema_version and kind:\n%.200s", out)
			}
		})
	}
	// An error document names the file, line and field of each problem.
	_, out, _ := run(t, "-i", bad, "-o", "json", "inventory", "validate")
	for _, want := range []string{`"file": "` + bad + `"`, `"line": 6`, `"field": "datacenters[0].nodes[0].address"`} {
		if !strings.Contains(out, want) {
			t.Errorf("error document lacks %s:\n%s", want, out)
		}
	}
}
