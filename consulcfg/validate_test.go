package consulcfg

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sockaddrtemplate "github.com/hashicorp/go-sockaddr/template"

	"github.com/mtlsctl/mtlsctl/internal/testinfra/consultest"
)

// TestConsulValidate runs the real `consul validate` of the matching version
// on every node's rendered config directory. The rendered data_dir
// (/opt/consul) need not exist: validate only refuses a data_dir that exists
// and is not a directory (or holds a pre-0.5 "mdb" folder), so the rendered
// config is validated exactly as written.
func TestConsulValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version string
		input   func(testing.TB) Input
	}{
		{"five-node-1.6.2", "1.6.2", fiveNode},
		{"two-dc-1.13.9", "1.13.9", twoDC},
		{"template-server-1.6.2", "1.6.2", withTemplateServer(fiveNode)},
		{"template-server-1.13.9", "1.13.9", withTemplateServer(twoDC)},
		{"five-node-mesh-1.6.2", "1.6.2", fiveNodeMesh},
		{"two-dc-mesh-1.6.2", "1.6.2", twoDCMesh},
		{"two-dc-mesh-1.13.9", "1.13.9", withVersion(twoDCMesh, "1.13.9")},
		{"five-node-mesh-acl-1.6.2", "1.6.2", withACL(fiveNodeMesh)},
		{"two-dc-mesh-acl-1.13.9", "1.13.9", withACL(withVersion(twoDCMesh, "1.13.9"))},
		{"five-node-acl-no-mesh-1.6.2", "1.6.2", withACL(fiveNode)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := consultest.Binary(t, tc.version)
			in := tc.input(t)
			bundles, err := Render(in)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := WriteTree(dir, bundles); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var wg sync.WaitGroup
			sem := make(chan struct{}, 4) // the machine has 2 cores, shared
			for _, b := range bundles {
				if addr := in.Topology.Node(b.Node).Address; !resolves(addr) {
					t.Logf("node %s: skipped: its address %s resolves to nothing on this machine", b.Node, addr)
					continue
				}
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					confDir := filepath.Join(dir, b.Node, filepath.FromSlash(in.Topology.Cluster.Consul.ConfigDir))
					cmd := exec.CommandContext(ctx, bin, "validate", confDir)
					cmd.Env = append(os.Environ(), "HOME="+dir) // keep the developer's home out of it
					out, err := cmd.CombinedOutput()
					switch {
					case err != nil:
						t.Errorf("node %s: consul %s validate: %v\n%s", b.Node, tc.version, err, out)
					case !strings.Contains(string(out), "Configuration is valid!"):
						t.Errorf("node %s: consul %s validate did not say valid:\n%s", b.Node, tc.version, out)
					case strings.Contains(strings.ToLower(string(out)), "deprecat"):
						t.Errorf("node %s: consul %s validate warns of deprecated settings:\n%s", b.Node, tc.version, out)
					}
				})
			}
			wg.Wait()
		})
	}
}

// withVersion renders f's cluster for another Consul version.
func withVersion(f func(testing.TB) Input, version string) func(testing.TB) Input {
	return func(t testing.TB) Input {
		in := f(t)
		in.Topology.Cluster.Consul.Version = version
		return in
	}
}

// withTemplateServer gives the third server of the first datacenter a
// go-sockaddr template address, so that validate resolves
// "127.0.0.1 {{ template }}" in addresses.
func withTemplateServer(f func(testing.TB) Input) func(testing.TB) Input {
	return func(t testing.TB) Input {
		in := f(t)
		in.Topology.Servers(in.Topology.Cluster.Datacenters[0].Name)[2].Address = `{{ GetPrivateIP }}`
		return in
	}
}

// resolves reports whether addr is an IP or a template that resolves to one
// here (`consul validate` resolves templates on the machine it runs on).
func resolves(addr string) bool {
	s, err := sockaddrtemplate.Parse(addr)
	return err == nil && strings.TrimSpace(s) != ""
}

// TestConfigFilesInBundle checks that every file the agent config names (TLS
// files, flat or in the tls stanza) is in the node's bundle.
func TestConfigFilesInBundle(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.input(t)
			bundles, err := Render(in)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range bundles {
				cf := b.File(in.Topology.Cluster.Consul.ConfigDir + "/" + AgentConfigName)
				if cf == nil {
					t.Fatalf("%s: no agent config", b.Node)
				}
				var cfg map[string]any
				if err := json.Unmarshal(cf.Content, &cfg); err != nil {
					t.Fatalf("%s: agent config: %v", b.Node, err)
				}
				named := fileKeys(cfg)
				if len(named) != 3 {
					t.Errorf("%s: config names %d TLS files, want ca, cert and key: %v", b.Node, len(named), named)
				}
				for key, p := range named {
					if b.File(p) == nil {
						t.Errorf("%s: %s = %s is not in the bundle", b.Node, key, p)
					}
				}
			}
		})
	}
}

// fileKeys collects the *_file keys anywhere in a config, by dotted key.
func fileKeys(v any) map[string]string {
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		for k, x := range m {
			if s, ok := x.(string); ok && strings.HasSuffix(k, "_file") {
				out[prefix+k] = s
			}
			walk(prefix+k+".", x)
		}
	}
	walk("", v)
	return out
}
