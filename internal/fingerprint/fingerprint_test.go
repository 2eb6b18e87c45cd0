package fingerprint

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestGossip(t *testing.T) {
	const key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" // bytes 0..31
	tests := []struct {
		name, key, want string
	}{
		{"decoded bytes are hashed", key, "sha256:630dcd2966c43366"},
		{"surrounding white space is ignored", " " + key + "\n", "sha256:630dcd2966c43366"},
		{"not base64: the string is hashed", "not base64!", "sha256:f17f1486250c2a7f"},
		{"empty", "", "sha256:e3b0c44298fc1c14"},
	}
	shape := regexp.MustCompile(`^sha256:[0-9a-f]{16}$`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Gossip(tc.key)
			if got != tc.want {
				t.Errorf("Gossip = %s, want %s", got, tc.want)
			}
			if !shape.MatchString(got) {
				t.Errorf("Gossip = %s: not sha256:<16 hex>", got)
			}
			if k := strings.TrimSpace(tc.key); k != "" && strings.Contains(got, k) {
				t.Error("the fingerprint contains the key")
			}
		})
	}
	if Gossip(key) == Gossip("AAECAwQFBgcICQoLDA0ODw==") {
		t.Error("two keys share a fingerprint")
	}
}

// FuzzGossip: whatever the input, the fingerprint has its fixed shape and
// never contains the key.
func FuzzGossip(f *testing.F) {
	f.Add("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	f.Add("sha256:")
	f.Fuzz(func(t *testing.T, key string) {
		got := Gossip(key)
		if len(got) != len("sha256:")+16 || !strings.HasPrefix(got, GossipPrefix) {
			t.Fatalf("Gossip = %q", got)
		}
		if k := strings.TrimSpace(key); len(k) > 7 && strings.Contains(got, k) {
			t.Fatal("the fingerprint contains the key")
		}
	})
}

func TestCert(t *testing.T) {
	tests := []struct {
		name string
		der  []byte
		want string
	}{
		{"empty", nil, "E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"},
		{"abc", []byte("abc"), "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Cert(tc.der); got != tc.want {
				t.Errorf("Cert = %s\nwant   %s", got, tc.want)
			}
		})
	}
}

// TestCertMatchesOpenSSL checks the format against openssl itself (skipped
// where openssl is not installed).
func TestCertMatchesOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "fingerprint test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "x509", "-noout", "-fingerprint", "-sha256")
	cmd.Stdin = bytes.NewReader(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	_, want, ok := strings.Cut(strings.TrimSpace(string(out)), "=")
	if !ok {
		t.Fatalf("unexpected openssl output %q", out)
	}
	if got := Cert(der); got != want {
		t.Errorf("Cert = %s\nopenssl %s", got, want)
	}
}
