package consulcfg

import (
	"bytes"
	"encoding/json"
	"reflect"
)

// reloadable are the top-level agent config keys whose change a running
// agent applies on SIGHUP (`consul reload`), per Consul's "Reloadable
// Configuration" list (1.6 to 1.13): services and checks, watches, log
// level, node metadata and discard_check_output. RPC rate limits are left
// out on purpose: "limits" also holds settings a reload ignores.
var reloadable = map[string]bool{
	"services": true, "service": true,
	"checks": true, "check": true,
	"watches":              true,
	"log_level":            true,
	"node_meta":            true,
	"discard_check_output": true,
}

// tlsFiles are the TLS keys a reload applies, provided TLS is on both before
// and after: Consul reloads certificates and CA files (and the TLS
// settings around them) but cannot turn TLS on or off without a restart.
// The verify_* flags are deliberately absent: they change which connections
// are accepted, and a restart is the documented way to change them.
var tlsFiles = map[string]bool{
	"ca_file": true, "ca_path": true, "cert_file": true, "key_file": true,
	"tls_min_version": true, "tls_cipher_suites": true, "tls_prefer_server_cipher_suites": true,
}

// NeedsRestart reports whether going from the agent config old to new (both
// JSON, as rendered here) needs an agent restart, or whether a reload
// (SIGHUP) applies it. When unsure it says restart: unparsable input, a key
// it does not know to be reloadable, turning TLS or gossip encryption on or
// off. A new "encrypt" value alone needs no restart: an agent that already
// has a keyring ignores it (the keyring in the data dir wins), and the key
// is rotated through the keyring API instead. File contents that the config
// only names (certificates, CA bundle, key) are not part of the config, so
// rotating them never needs a restart.
func NeedsRestart(old, new []byte) bool {
	if bytes.Equal(old, new) {
		return false
	}
	var o, n map[string]any
	if json.Unmarshal(old, &o) != nil || json.Unmarshal(new, &n) != nil || o == nil || n == nil {
		return true
	}
	if tlsOn(o) != tlsOn(n) {
		return true
	}
	if (str(o["encrypt"]) == "") != (str(n["encrypt"]) == "") {
		return true
	}
	for _, k := range unionKeys(o, n) {
		ov, nv := o[k], n[k]
		if reflect.DeepEqual(ov, nv) || reloadable[k] || k == "encrypt" || (tlsFiles[k] && tlsOn(o)) {
			continue
		}
		if k == "tls" && tlsOn(o) && tlsBlockReloadable(ov, nv) {
			continue
		}
		if k == "acl" && aclTokensOnly(ov, nv) {
			continue
		}
		return true
	}
	return false
}

// tlsOn reports whether the config gives the agent a certificate and key
// (flat keys before Consul 1.12, tls.defaults from 1.12).
func tlsOn(cfg map[string]any) bool {
	if str(cfg["cert_file"]) != "" && str(cfg["key_file"]) != "" {
		return true
	}
	t, _ := cfg["tls"].(map[string]any)
	d, _ := t["defaults"].(map[string]any)
	return str(d["cert_file"]) != "" && str(d["key_file"]) != ""
}

// tlsBlockReloadable reports whether two tls {} stanzas differ only in
// reloadable file and cipher settings.
func tlsBlockReloadable(old, new any) bool {
	o, _ := old.(map[string]any)
	n, _ := new.(map[string]any)
	for _, sect := range unionKeys(o, n) {
		os, _ := o[sect].(map[string]any)
		ns, _ := n[sect].(map[string]any)
		if os == nil || ns == nil {
			if !reflect.DeepEqual(o[sect], n[sect]) {
				return false
			}
			continue
		}
		for _, k := range unionKeys(os, ns) {
			if !reflect.DeepEqual(os[k], ns[k]) && !tlsFiles[k] {
				return false
			}
		}
	}
	return true
}

// aclTokensOnly reports whether two acl stanzas, both with ACLs on, differ
// only in their tokens, which a reload applies (`rotate tokens`).
func aclTokensOnly(old, new any) bool {
	o, _ := old.(map[string]any)
	n, _ := new.(map[string]any)
	if o == nil || n == nil || o["enabled"] != true || n["enabled"] != true {
		return false
	}
	for _, k := range unionKeys(o, n) {
		if k != "tokens" && !reflect.DeepEqual(o[k], n[k]) {
			return false
		}
	}
	return true
}

func unionKeys(a, b map[string]any) []string {
	var out []string
	for k := range a {
		out = append(out, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
