package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

func TestIssue(t *testing.T) {
	s := newState(t)
	c := mustCA(t, s, newCAOpts())
	nc := mustCA(t, newState(t), CAOptions{Now: fixedNow, NameConstraints: true})
	rsaCA := mustCA(t, newState(t), CAOptions{Now: fixedNow, KeyType: KeyRSA2048, KeyGen: caKeyGen})
	tests := []struct {
		name     string
		ca       *CA
		spec     LeafSpec
		opts     IssueOptions
		wantCN   string
		wantDNS  []string
		wantIPs  []string
		wantKU   x509.KeyUsage
		wantDays int
	}{
		{
			name:    "server",
			spec:    LeafSpec{Node: "zk1", Datacenter: "dc-1", Server: true, Addresses: []string{"10.0.0.11"}},
			wantCN:  "server.dc-1.consul",
			wantDNS: []string{"server.dc-1.consul", "zk1.server.dc-1.consul", "localhost"},
			wantIPs: []string{"127.0.0.1", "10.0.0.11"},
			wantKU:  x509.KeyUsageDigitalSignature,
		},
		{
			name:    "client",
			spec:    LeafSpec{Node: "mp1", Datacenter: "dc-2", Addresses: []string{"10.0.0.12", "10.0.0.12", "fd00::1"}},
			wantCN:  "client.dc-2.consul",
			wantDNS: []string{"client.dc-2.consul", "localhost"},
			wantIPs: []string{"127.0.0.1", "10.0.0.12", "fd00::1"},
			wantKU:  x509.KeyUsageDigitalSignature,
		},
		{
			name:    "client without address, custom domain",
			spec:    LeafSpec{Node: "mp2", Datacenter: "dc-1", Domain: "edge."},
			wantCN:  "client.dc-1.edge",
			wantDNS: []string{"client.dc-1.edge", "localhost"},
			wantIPs: []string{"127.0.0.1"},
			wantKU:  x509.KeyUsageDigitalSignature,
		},
		{
			name:     "rsa key, 30 days, rsa CA",
			ca:       rsaCA,
			spec:     LeafSpec{Node: "zk2", Datacenter: "dc-1", Server: true, Days: 30},
			opts:     IssueOptions{KeyType: KeyRSA2048},
			wantCN:   "server.dc-1.consul",
			wantDNS:  []string{"server.dc-1.consul", "zk2.server.dc-1.consul", "localhost"},
			wantIPs:  []string{"127.0.0.1"},
			wantKU:   x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			wantDays: 30,
		},
		{
			name:    "name-constrained CA",
			ca:      nc,
			spec:    LeafSpec{Node: "zk3", Datacenter: "dc-1", Server: true, Addresses: []string{"10.0.0.13"}},
			wantCN:  "server.dc-1.consul",
			wantDNS: []string{"server.dc-1.consul", "zk3.server.dc-1.consul", "localhost"},
			wantIPs: []string{"127.0.0.1", "10.0.0.13"},
			wantKU:  x509.KeyUsageDigitalSignature,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ca := cmp(tc.ca, c)
			o := tc.opts
			o.Now, o.KeyGen = fixedNow, testKeyGen
			l, err := ca.Issue(tc.spec, o)
			if err != nil {
				t.Fatal(err)
			}
			cert := l.Cert
			if cert.Subject.CommonName != tc.wantCN {
				t.Errorf("CN %q, want %q", cert.Subject.CommonName, tc.wantCN)
			}
			if !slices.Equal(cert.DNSNames, tc.wantDNS) {
				t.Errorf("DNS SANs %v, want %v", cert.DNSNames, tc.wantDNS)
			}
			var ips []string
			for _, ip := range cert.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tc.wantIPs) {
				t.Errorf("IP SANs %v, want %v", ips, tc.wantIPs)
			}
			if cert.IsCA || !cert.BasicConstraintsValid {
				t.Error("leaf must have CA:FALSE")
			}
			if cert.KeyUsage != tc.wantKU {
				t.Errorf("key usage %b, want %b", cert.KeyUsage, tc.wantKU)
			}
			if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
				t.Errorf("EKU %v, want serverAuth+clientAuth", cert.ExtKeyUsage)
			}
			if !bytes.Equal(cert.AuthorityKeyId, ca.Cert.SubjectKeyId) || len(cert.SubjectKeyId) == 0 || bytes.Equal(cert.SubjectKeyId, ca.Cert.SubjectKeyId) {
				t.Errorf("AKI %x SKI %x, CA SKI %x", cert.AuthorityKeyId, cert.SubjectKeyId, ca.Cert.SubjectKeyId)
			}
			if cert.SerialNumber.BitLen() != 128 {
				t.Errorf("serial %d bits, want 128", cert.SerialNumber.BitLen())
			}
			days := cmp(tc.wantDays, 365)
			if cert.NotBefore != t0.Add(-time.Minute) || cert.NotAfter != t0.AddDate(0, 0, days) {
				t.Errorf("validity %v – %v, want %v – %d days", cert.NotBefore, cert.NotAfter, t0, days)
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca.Cert)
			for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
				_, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{usage}, DNSName: tc.wantCN})
				if err != nil {
					t.Errorf("verify for %v: %v", usage, err)
				}
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t0, DNSName: "127.0.0.1"}); err != nil {
				t.Errorf("verify 127.0.0.1: %v", err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: t0, DNSName: "server.other.consul"}); err == nil && !tc.spec.Server {
				t.Error("verified for another name")
			}
			key, err := parseKey(l.KeyPEM)
			if err != nil || !keyMatches(key, cert.PublicKey) {
				t.Errorf("key does not match: %v", err)
			}
		})
	}
}

func TestIssueErrors(t *testing.T) {
	c := mustCA(t, newState(t), CAOptions{Now: fixedNow, NameConstraints: true})
	short := mustCA(t, newState(t), CAOptions{Now: fixedNow, Days: 10})
	ok := LeafSpec{Node: "n1", Datacenter: "dc1"}
	tests := []struct {
		name    string
		ca      *CA
		spec    LeafSpec
		opts    IssueOptions
		wantErr error
		wantMsg string
	}{
		{name: "template address", spec: LeafSpec{Node: "n1", Datacenter: "dc1", Addresses: []string{`{{ GetPrivateIP }}`}}, wantErr: ErrInvalidSpec, wantMsg: "template"},
		{name: "bad address", spec: LeafSpec{Node: "n1", Datacenter: "dc1", Addresses: []string{"host.example"}}, wantErr: ErrInvalidSpec, wantMsg: "not an IP"},
		{name: "no node", spec: LeafSpec{Datacenter: "dc1"}, wantErr: ErrInvalidSpec, wantMsg: "node name is empty"},
		{name: "path in node name", spec: LeafSpec{Node: "../x", Datacenter: "dc1"}, wantErr: ErrInvalidSpec, wantMsg: "node name"},
		{name: "slash in node name", spec: LeafSpec{Node: "a/b", Datacenter: "dc1"}, wantErr: ErrInvalidSpec, wantMsg: "'/'"},
		{name: "no datacenter", spec: LeafSpec{Node: "n1"}, wantErr: ErrInvalidSpec, wantMsg: "datacenter"},
		{name: "domain outside name constraints", spec: LeafSpec{Node: "n1", Datacenter: "dc1", Domain: "edge"}, wantErr: ErrInvalidSpec, wantMsg: "may only sign names under consul, localhost"},
		{name: "bad key type", spec: ok, opts: IssueOptions{KeyType: "ed448"}, wantErr: ErrKeyType},
		{name: "key generation fails", spec: ok, opts: IssueOptions{KeyGen: func(string) (crypto.Signer, error) { return nil, io.ErrUnexpectedEOF }}, wantErr: io.ErrUnexpectedEOF, wantMsg: `node "n1"`},
		{name: "rand fails", spec: ok, opts: IssueOptions{Rand: bytes.NewReader([]byte{1, 2})}, wantErr: io.ErrUnexpectedEOF},
		{name: "CA expired", ca: short, spec: ok, opts: IssueOptions{Now: func() time.Time { return t0.AddDate(0, 0, 11) }}, wantErr: ErrCAExpired, wantMsg: "expired on"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			if o.Now == nil {
				o.Now = fixedNow
			}
			_, err := cmp(tc.ca, c).Issue(tc.spec, o)
			checkErr(t, err, tc.wantErr, tc.wantMsg)
		})
	}
	t.Run("clamped to CA expiry", func(t *testing.T) {
		l, err := short.Issue(ok, IssueOptions{Now: fixedNow})
		if err != nil {
			t.Fatal(err)
		}
		if !l.Cert.NotAfter.Equal(short.Cert.NotAfter) {
			t.Errorf("leaf NotAfter %v outlives CA %v", l.Cert.NotAfter, short.Cert.NotAfter)
		}
	})
	t.Run("normalised spec", func(t *testing.T) {
		l, err := c.Issue(LeafSpec{Node: "n1", Datacenter: "dc1", Addresses: []string{"10.0.0.2", "::ffff:10.0.0.1", "10.0.0.2"}}, IssueOptions{Now: fixedNow})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"10.0.0.1", "10.0.0.2"}; !slices.Equal(l.Spec.Addresses, want) || l.Spec.Domain != "consul" || l.Spec.Days != 365 {
			t.Errorf("spec %+v", l.Spec)
		}
		if !l.Cert.IPAddresses[1].Equal(net.ParseIP("10.0.0.1")) {
			t.Errorf("IPs %v", l.Cert.IPAddresses)
		}
	})
}
