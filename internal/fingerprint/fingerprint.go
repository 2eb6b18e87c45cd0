// Package fingerprint is the one place for how mtlsctl shows secrets and
// certificates without revealing them: the admin machine, the rendered
// configs, diffs and `mtlsctl status` on the nodes all print these forms, so
// the same key or certificate always reads the same everywhere.
//
// It must not return, log or otherwise expose its input: a fingerprint is a
// truncated or full digest only. It must import nothing of mtlsctl.
package fingerprint

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// GossipPrefix starts every gossip-key fingerprint.
const GossipPrefix = "sha256:"

// Gossip identifies a gossip key: "sha256:" and the first 16 hex digits of
// the SHA-256 of the decoded key bytes, so the fingerprint does not depend on
// how the key's base64 text is wrapped in a file. Surrounding white space is
// ignored. A key that is not standard base64 is hashed as it stands; it is
// never returned.
func Gossip(key string) string {
	key = strings.TrimSpace(key)
	raw, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		raw = []byte(key)
	}
	sum := sha256.Sum256(raw)
	return GossipPrefix + hex.EncodeToString(sum[:8])
}

// TokenPrefix starts every ACL token fingerprint.
const TokenPrefix = "token:"

// Token identifies a Consul ACL token (its secret ID) without revealing it:
// "token:" and the first 16 hex digits of the SHA-256 of the trimmed text.
func Token(secret string) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(secret)))
	return TokenPrefix + hex.EncodeToString(sum[:8])
}

// Cert is the SHA-256 fingerprint of a DER certificate as
// `openssl x509 -noout -fingerprint -sha256` prints it: 32 upper-case hex
// bytes joined by colons (AB:CD:...).
func Cert(der []byte) string {
	const digits = "0123456789ABCDEF"
	sum := sha256.Sum256(der)
	out := make([]byte, 0, len(sum)*3-1)
	for i, b := range sum {
		if i > 0 {
			out = append(out, ':')
		}
		out = append(out, digits[b>>4], digits[b&0xf])
	}
	return string(out)
}
