package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCreateCA(t *testing.T) {
	tests := []struct {
		name    string
		opts    CAOptions
		check   func(t *testing.T, c *CA)
		wantErr error
	}{
		{
			name: "defaults",
			check: func(t *testing.T, c *CA) {
				k, ok := c.Cert.PublicKey.(*ecdsa.PublicKey)
				if !ok || k.Curve != elliptic.P256() {
					t.Errorf("key %T, want ECDSA P-256", c.Cert.PublicKey)
				}
				if c.Cert.NotAfter != t0.AddDate(0, 0, 1825) {
					t.Errorf("NotAfter %v, want 1825 days after %v", c.Cert.NotAfter, t0)
				}
				if !strings.HasPrefix(c.Cert.Subject.CommonName, "Consul Agent CA ") || !strings.HasSuffix(c.Cert.Subject.CommonName, c.Cert.SerialNumber.String()) {
					t.Errorf("CN %q", c.Cert.Subject.CommonName)
				}
				if len(c.Cert.PermittedDNSDomains) != 0 {
					t.Errorf("unexpected name constraints %v", c.Cert.PermittedDNSDomains)
				}
			},
		},
		{
			name: "rsa-2048, 10 days, CN",
			opts: CAOptions{KeyType: KeyRSA2048, Days: 10, CommonName: "Edge CA"},
			check: func(t *testing.T, c *CA) {
				if k, ok := c.Cert.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != 2048 {
					t.Errorf("key %T, want RSA-2048", c.Cert.PublicKey)
				}
				if c.Cert.NotAfter != t0.AddDate(0, 0, 10) || c.Cert.Subject.CommonName != "Edge CA" {
					t.Errorf("NotAfter %v CN %q", c.Cert.NotAfter, c.Cert.Subject.CommonName)
				}
			},
		},
		{
			name: "name constraints",
			opts: CAOptions{NameConstraints: true, Domain: "edge"},
			check: func(t *testing.T, c *CA) {
				if !c.Cert.PermittedDNSDomainsCritical || strings.Join(c.Cert.PermittedDNSDomains, ",") != "edge,localhost" {
					t.Errorf("constraints %v critical %v, want edge,localhost critical", c.Cert.PermittedDNSDomains, c.Cert.PermittedDNSDomainsCritical)
				}
			},
		},
		{name: "bad key type", opts: CAOptions{KeyType: "dsa"}, wantErr: ErrKeyType},
		{
			name:    "key generation fails",
			opts:    CAOptions{KeyGen: func(string) (crypto.Signer, error) { return nil, errors.New("no entropy") }},
			wantErr: nil,
		},
		{name: "rand fails", opts: CAOptions{Rand: bytes.NewReader(nil)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newState(t)
			o := tc.opts
			o.Now = fixedNow
			if o.KeyGen == nil {
				o.KeyGen = caKeyGen
			}
			c, err := s.CreateCA(o)
			if tc.check == nil {
				if err == nil {
					t.Fatal("no error")
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("error %v, want %v", err, tc.wantErr)
				}
				if _, err := os.Stat(filepath.Join(s.Dir(), "ca")); err == nil {
					t.Error("a failed CreateCA left files")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkCAProperties(t, c.Cert)
			tc.check(t, c)
			if got := mode(t, filepath.Join(s.Dir(), "ca", caKeyFile)); got != 0o600 {
				t.Errorf("CA key mode %04o, want 0600", got)
			}
			if got := mode(t, filepath.Join(s.Dir(), "ca")); got != 0o700 {
				t.Errorf("ca dir mode %04o, want 0700", got)
			}
			loaded, err := s.LoadCA()
			if err != nil {
				t.Fatal(err)
			}
			if loaded.Fingerprint() != c.Fingerprint() {
				t.Error("loaded CA differs")
			}
			if _, err := s.CreateCA(o); !errors.Is(err, ErrCAExists) {
				t.Errorf("second CreateCA: %v, want ErrCAExists", err)
			}
		})
	}
}

func checkCAProperties(t *testing.T, c *x509.Certificate) {
	t.Helper()
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Error("not a CA")
	}
	if c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("path length %d (zero %v), want 0", c.MaxPathLen, c.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature; c.KeyUsage != want {
		t.Errorf("key usage %b, want %b", c.KeyUsage, want)
	}
	if len(c.SubjectKeyId) != 20 || !bytes.Equal(c.SubjectKeyId, c.AuthorityKeyId) {
		t.Errorf("SKI %x AKI %x", c.SubjectKeyId, c.AuthorityKeyId)
	}
	if c.SerialNumber.BitLen() != 128 {
		t.Errorf("serial has %d bits, want 128", c.SerialNumber.BitLen())
	}
	if c.NotBefore != t0.Add(-time.Minute) {
		t.Errorf("NotBefore %v, want a minute before %v", c.NotBefore, t0)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
}

func TestLoadCAErrors(t *testing.T) {
	other := mustCA(t, newState(t), newCAOpts())
	tests := []struct {
		name    string
		mutate  func(t *testing.T, certPath, keyPath string)
		wantErr error
		wantMsg []string
	}{
		{name: "no CA", mutate: func(t *testing.T, c, k string) { os.Remove(c); os.Remove(k) }, wantErr: ErrNoCA},
		{name: "corrupt cert", mutate: func(t *testing.T, c, k string) { os.WriteFile(c, []byte("garbage"), 0o644) }, wantErr: ErrCorrupt, wantMsg: []string{caCertFile, "backup"}},
		{name: "truncated cert", mutate: func(t *testing.T, c, k string) {
			d, _ := os.ReadFile(c)
			os.WriteFile(c, d[:len(d)/2], 0o644)
		}, wantErr: ErrCorrupt, wantMsg: []string{caCertFile}},
		{name: "corrupt key", mutate: func(t *testing.T, c, k string) {
			os.WriteFile(k, []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"), 0o600)
		}, wantErr: ErrCorrupt, wantMsg: []string{caKeyFile, "backup"}},
		{name: "key without cert", mutate: func(t *testing.T, c, k string) { os.Remove(c) }, wantErr: ErrCorrupt, wantMsg: []string{"interrupted", caKeyFile}},
		{name: "cert without key", mutate: func(t *testing.T, c, k string) { os.Remove(k) }, wantErr: ErrCorrupt, wantMsg: []string{"missing", caKeyFile}},
		{name: "mismatched key", mutate: func(t *testing.T, c, k string) { os.WriteFile(k, other.keyPEM, 0o600) }, wantErr: ErrCorrupt, wantMsg: []string{"does not match"}},
		{name: "loose key", mutate: func(t *testing.T, c, k string) { os.Chmod(k, 0o644) }, wantErr: ErrLoosePermissions, wantMsg: []string{caKeyFile, "0644"}},
		{name: "unreadable key", mutate: func(t *testing.T, c, k string) {
			if os.Getuid() == 0 {
				t.Skip("root reads everything")
			}
			os.Chmod(k, 0o000)
		}, wantMsg: []string{caKeyFile}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newState(t)
			mustCA(t, s, newCAOpts())
			certPath, keyPath := s.caFiles()
			tc.mutate(t, certPath, keyPath)
			_, err := s.LoadCA()
			checkErr(t, err, tc.wantErr, tc.wantMsg...)
			noSecret(t, err.Error())
			// Generate must not regenerate over a broken CA either.
			if tc.wantErr != ErrNoCA {
				before := treeHash(t, s.Dir())
				if _, err := s.Generate(topology(1, 3), genOpts()); err == nil {
					t.Error("Generate succeeded over a broken CA")
				}
				if d := diffTrees(before, treeHash(t, s.Dir())); len(d) > 0 {
					t.Errorf("Generate changed %v", d)
				}
			}
		})
	}
}

func TestImportCA(t *testing.T) {
	src := mustCA(t, newState(t), newCAOpts())
	other := mustCA(t, newState(t), newCAOpts())
	leaf, err := src.Issue(LeafSpec{Node: "n1", Datacenter: "dc1"}, IssueOptions{Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		cert, key []byte
		existing  *CA
		wantErr   error
		wantMsg   string
	}{
		{name: "import", cert: src.CertPEM, key: src.keyPEM},
		{name: "same again is a no-op", cert: src.CertPEM, key: src.keyPEM, existing: src},
		{name: "different CA exists", cert: src.CertPEM, key: src.keyPEM, existing: other, wantErr: ErrCAExists, wantMsg: "differs from the one imported"},
		{name: "mismatched key", cert: src.CertPEM, key: other.keyPEM, wantErr: ErrInvalidCA, wantMsg: "does not belong"},
		{name: "not a CA", cert: leaf.CertPEM, key: leaf.KeyPEM, wantErr: ErrInvalidCA, wantMsg: "not a CA"},
		{name: "garbage cert", cert: []byte("nope"), key: src.keyPEM, wantErr: ErrInvalidCA},
		{name: "garbage key", cert: src.CertPEM, key: []byte("nope"), wantErr: ErrInvalidCA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newState(t)
			if tc.existing != nil {
				if err := writeBatch(s.Dir(), s.caWrites(tc.existing)); err != nil {
					t.Fatal(err)
				}
			}
			c, err := s.ImportCA(tc.cert, tc.key)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("error %v, want %v mentioning %q", err, tc.wantErr, tc.wantMsg)
				}
				if err != nil {
					noSecret(t, err.Error())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Fingerprint() != src.Fingerprint() {
				t.Error("imported CA differs")
			}
			loaded, err := s.LoadCA()
			if err != nil || loaded.Fingerprint() != src.Fingerprint() {
				t.Errorf("load after import: %v", err)
			}
		})
	}
}

func TestOpenSSLVerify(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not on PATH: skipping the cross-check with OpenSSL")
	}
	for _, nc := range []bool{false, true} {
		s := newState(t)
		c := mustCA(t, s, CAOptions{NameConstraints: nc})
		for _, server := range []bool{true, false} {
			l, err := c.Issue(LeafSpec{Node: "n1", Datacenter: "dc1", Server: server, Addresses: []string{"10.0.0.1"}}, IssueOptions{})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			caPath, certPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "cert.pem")
			os.WriteFile(caPath, c.CertPEM, 0o600)
			os.WriteFile(certPath, l.CertPEM, 0o600)
			for _, purpose := range []string{"sslserver", "sslclient"} {
				out, err := exec.Command(openssl, "verify", "-purpose", purpose, "-CAfile", caPath, certPath).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "OK") {
					t.Errorf("constraints %v server %v purpose %s: openssl verify: %v\n%s", nc, server, purpose, err, out)
				}
			}
		}
	}
}
