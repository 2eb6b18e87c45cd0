package consulcfg

import (
	"strings"
	"testing"
)

func TestNeedsRestart(t *testing.T) {
	const flat = `{"datacenter":"dc-1","node_name":"n1","server":true,"bootstrap_expect":3,
"ports":{"http":8500,"https":8503},"encrypt":"K1","log_level":"INFO",
"ca_file":"/tls/ca.pem","cert_file":"/tls/agent.pem","key_file":"/tls/agent-key.pem",
"verify_incoming":true,"verify_outgoing":true,"verify_server_hostname":true}`
	const block = `{"datacenter":"dc-1","node_name":"n1","encrypt":"K1",
"tls":{"defaults":{"ca_file":"/tls/ca.pem","cert_file":"/tls/agent.pem","key_file":"/tls/agent-key.pem","verify_incoming":true,"verify_outgoing":true},
"internal_rpc":{"verify_server_hostname":true}}}`
	edit := func(base, from, to string) string {
		if !strings.Contains(base, from) {
			t.Fatalf("test bug: %q not in base", from)
		}
		return strings.Replace(base, from, to, 1)
	}
	tests := []struct {
		name     string
		old, new string
		want     bool
	}{
		{"identical", flat, flat, false},
		{"acl turned on", flat, edit(flat, `"log_level":"INFO",`, `"log_level":"INFO","acl":{"enabled":true,"default_policy":"deny","tokens":{"agent":"a1"}},`), true},
		{"agent token rotated", edit(flat, `"log_level":"INFO",`, `"log_level":"INFO","acl":{"enabled":true,"default_policy":"deny","tokens":{"agent":"a1"}},`),
			edit(flat, `"log_level":"INFO",`, `"log_level":"INFO","acl":{"enabled":true,"default_policy":"deny","tokens":{"agent":"a2"}},`), false},
		{"acl default policy changed", edit(flat, `"log_level":"INFO",`, `"log_level":"INFO","acl":{"enabled":true,"default_policy":"deny","tokens":{"agent":"a1"}},`),
			edit(flat, `"log_level":"INFO",`, `"log_level":"INFO","acl":{"enabled":true,"default_policy":"allow","tokens":{"agent":"a1"}},`), true},
		{"whitespace only", flat, strings.ReplaceAll(flat, "\n", "\n  "), false},
		{"log level", flat, edit(flat, `"INFO"`, `"DEBUG"`), false},
		{"new gossip key in encrypt", flat, edit(flat, `"K1"`, `"K2"`), false},
		{"gossip encryption turned off", flat, edit(flat, `"encrypt":"K1",`, ``), true},
		{"gossip encryption turned on", edit(flat, `"encrypt":"K1",`, ``), flat, true},
		{"ca file moved", flat, edit(flat, `/tls/ca.pem`, `/tls2/ca.pem`), false},
		{"tls turned off", flat, edit(flat, `"cert_file":"/tls/agent.pem",`, ``), true},
		{"verify_incoming changed", flat, edit(flat, `"verify_incoming":true`, `"verify_incoming":false`), true},
		{"https port", flat, edit(flat, `"https":8503`, `"https":8501`), true},
		{"datacenter", flat, edit(flat, `"dc-1"`, `"dc-2"`), true},
		{"bootstrap_expect", flat, edit(flat, `"bootstrap_expect":3`, `"bootstrap_expect":5`), true},
		{"unknown key added", flat, edit(flat, `"server":true`, `"server":true,"ui":true`), true},
		{"services added", flat, edit(flat, `"server":true`, `"server":true,"services":[{"name":"x"}]`), false},
		{"tls block file change", block, edit(block, `/tls/agent.pem`, `/tls/new.pem`), false},
		{"tls block verify change", block, edit(block, `"verify_server_hostname":true`, `"verify_server_hostname":false`), true},
		{"tls block grpc section added", block, edit(block, `"internal_rpc":{"verify_server_hostname":true}`, `"internal_rpc":{"verify_server_hostname":true},"grpc":{"verify_incoming":false}`), true},
		{"flat to tls block", flat, block, true},
		{"old not json", "not json", flat, true},
		{"new not an object", flat, `[1,2]`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeedsRestart([]byte(tt.old), []byte(tt.new)); got != tt.want {
				t.Errorf("NeedsRestart = %v, want %v", got, tt.want)
			}
		})
	}
}
