package consulcfg

import (
	"encoding/json"
	"testing"
)

// FuzzRedact: whatever the key, a config that holds it comes back without it,
// and Redact never panics on arbitrary bytes.
func FuzzRedact(f *testing.F) {
	f.Add(testGossipKey, []byte(`{"encrypt": "x"}`))
	f.Add(`with "quotes" and \ backslash`, []byte(`"encrypt":"`))
	f.Add("é\u2028<>&", []byte{0xff, '"'})
	f.Fuzz(func(t *testing.T, key string, junk []byte) {
		_ = Redact(junk)
		for _, indent := range []string{"", "  "} {
			cfg, err := json.MarshalIndent(map[string]any{"datacenter": "dc-1", "encrypt": key, "encrypt_verify_incoming": true}, "", indent)
			if err != nil {
				t.Skip()
			}
			got := Redact(cfg)
			var back map[string]any
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("redacted config is not JSON: %v\n%s", err, got)
			}
			var docKey string // the key as the document holds it (invalid UTF-8 becomes U+FFFD)
			enc, _ := json.Marshal(key)
			_ = json.Unmarshal(enc, &docKey)
			if back["encrypt"] != "<redacted "+GossipKeyFingerprint(docKey)+">" || back["datacenter"] != "dc-1" {
				t.Fatalf("redacted wrongly: %s", got)
			}
		}
	})
}
