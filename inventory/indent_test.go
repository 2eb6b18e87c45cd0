package inventory

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// edit returns the edge-5 example with line n (1-based) replaced by repl
// (several lines allowed).
func editExample(t *testing.T, n int, repl string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "examples", "edge-5.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	lines[n-1] = repl
	return []byte(strings.Join(lines, "\n"))
}

// TestIndentationSlipLine: an indentation slip is reported at its own line,
// not at the start of the block yaml was reading.
func TestIndentationSlipLine(t *testing.T) {
	// edge-5.yaml: line 14 datacenters:, 16 nodes:, 20-22 node n2, 23 n3.
	tests := []struct {
		name string
		line int
		repl string
		want string // "file:LINE: ..." prefix and text
	}{
		{"key one space too far", 21, "         address: 198.18.0.12", "c.yaml:21: not valid YAML: mapping values are not allowed"},
		{"key one space too little", 21, "       address: 198.18.0.12", "c.yaml:21: not valid YAML: did not find expected '-' indicator (in the block from line 16"},
		{"list item one space too little", 23, "     - name: n3", "c.yaml:23: not valid YAML: did not find expected key (in the block from line 14"},
		{"list item one space too far", 23, "       - name: n3", "c.yaml:23: "},
		{"flow list key too little", 22, "       components: [zookeeper, cassandra]", "c.yaml:22: "},
		{"block list item misaligned", 19, "        components:\n          - zookeeper\n           - cassandra", `c.yaml:20: datacenters[0].nodes[0].components[0]: "zookeeper - cassandra" is list items run together`},
		{"misspelt key", 21, "        adress: 198.18.0.12", `c.yaml:21: datacenters[0].nodes[1].adress: unknown key "adress"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("c.yaml", editExample(t, tc.line, tc.repl))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %v, want a *ValidationError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n%v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestOffendingLine(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		from int
		want int
	}{
		{"a:\n  b: 1\n c: 2\n", 1, 3},
		{"a: 1\n", 1, 0},              // valid: nothing to find
		{"a:\n  - 1\n   - 2\n", 3, 0}, // from already fails
		{"", 0, 0},
	} {
		if got := offendingLine([]byte(tc.doc), tc.from); got != tc.want {
			t.Errorf("offendingLine(%q, %d) = %d, want %d", tc.doc, tc.from, got, tc.want)
		}
	}
}

// TestWarnings: valid but probably not meant: a node with no components, a
// datacenter with an even number of servers. Warnings, with their line;
// the file still loads.
func TestWarnings(t *testing.T) {
	fourServers := string(editExample(t, 28, "        components: [zookeeper, postgres, qpid]"))
	tests := []struct {
		name string
		doc  []byte
		want []string // "line: field: text" of each warning, in order
	}{
		{"example", editExample(t, 1, "#"), nil},
		{"node without components", editExample(t, 31, "        components: []"), []string{`31: datacenters[0].nodes[4].components: node "n5" has no components`}},
		{"node with components left out", editExample(t, 31, ""), []string{`29: datacenters[0].nodes[4].components: node "n5" has no components`}},
		{"four servers", []byte(fourServers), []string{`15: datacenters[0]: datacenter "dc-1" has 4 Consul servers (zookeeper nodes): an even number tolerates no more failures than 3`}},
		{"five servers", []byte(strings.Replace(fourServers, "components: [postgres, qpid]", "components: [zookeeper]", 1)), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			topo, err := Parse("c.yaml", tc.doc)
			if err != nil {
				t.Fatal(err)
			}
			if len(topo.Warnings) != len(tc.want) {
				t.Fatalf("warnings %v, want %d", topo.Warnings, len(tc.want))
			}
			for i, w := range topo.Warnings {
				if !strings.HasPrefix(w.String(), "c.yaml:"+tc.want[i]) {
					t.Errorf("warning %q, want prefix %q", w, "c.yaml:"+tc.want[i])
				}
				var j map[string]any
				data, _ := json.Marshal(w)
				if err := json.Unmarshal(data, &j); err != nil || j["file"] != "c.yaml" || j["line"] == nil || j["message"] == nil {
					t.Errorf("JSON %s", data)
				}
			}
		})
	}
}
