package ca

import (
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"
)

// ErrInvalidSpec means a LeafSpec cannot be issued as it is.
var ErrInvalidSpec = errors.New("invalid certificate request")

// ErrCAExpired means the CA can sign no more certificates: it is past its
// NotAfter, and a leaf may not outlive its CA.
var ErrCAExpired = errors.New("the CA has expired")

// LeafSpec is what a node's certificate is issued for.
type LeafSpec struct {
	Node       string `json:"node"`
	Datacenter string `json:"datacenter"`
	// Domain is the Consul domain (default consul).
	Domain string `json:"domain"`
	// Server marks a Consul server (a ZooKeeper node).
	Server bool `json:"server"`
	// Addresses are the node's IP addresses, added as IP SANs. A
	// go-sockaddr template is resolved on the node and cannot be here.
	Addresses []string `json:"addresses,omitempty"`
	// Days is the validity (default 365); never past the CA's own expiry.
	Days int `json:"days,omitempty"`
}

// Name is the certificate's common name, Consul's server.DC.DOMAIN or
// client.DC.DOMAIN.
func (sp LeafSpec) Name() string {
	role := "client"
	if sp.Server {
		role = "server"
	}
	return role + "." + sp.Datacenter + "." + sp.domain()
}

func (sp LeafSpec) domain() string {
	return strings.TrimSuffix(cmp(sp.Domain, DefaultDomain), ".")
}

// DNSNames are the DNS SANs, as `consul tls cert create` sets them:
// server.DC.DOMAIN, NODE.server.DC.DOMAIN and localhost for a server;
// client.DC.DOMAIN and localhost for a client.
func (sp LeafSpec) DNSNames() []string {
	if sp.Server {
		return []string{sp.Name(), sp.Node + "." + sp.Name(), "localhost"}
	}
	return []string{sp.Name(), "localhost"}
}

// normalize checks sp and returns it with defaults applied and addresses in
// canonical form, sorted and deduplicated.
func (sp LeafSpec) normalize() (LeafSpec, error) {
	bad := func(format string, a ...any) (LeafSpec, error) {
		return LeafSpec{}, fmt.Errorf("%w: node %q: %s", ErrInvalidSpec, sp.Node, fmt.Sprintf(format, a...))
	}
	if err := checkName("node name", sp.Node); err != nil {
		return bad("%v", err)
	}
	if err := checkName("datacenter", sp.Datacenter); err != nil {
		return bad("%v", err)
	}
	sp.Domain = sp.domain()
	if err := checkName("domain", sp.Domain); err != nil {
		return bad("%v", err)
	}
	if sp.Days < 0 {
		return bad("days must be positive, got %d", sp.Days)
	}
	sp.Days = cmp(sp.Days, DefaultLeafDays)
	var addrs []string
	for _, a := range sp.Addresses {
		ip := net.ParseIP(a)
		if ip == nil {
			if strings.Contains(a, "{{") {
				return bad("address %q is a go-sockaddr template: it is resolved on the node and cannot go into a certificate", a)
			}
			return bad("address %q is not an IP address", a)
		}
		addrs = append(addrs, ip.String())
	}
	slices.Sort(addrs)
	sp.Addresses = slices.Compact(addrs)
	return sp, nil
}

// checkName accepts names usable both as a DNS label sequence and as a
// directory name: letters, digits, '-', '_' and '.', not starting with '.'
// or '-'.
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if s[0] == '.' || s[0] == '-' || strings.Contains(s, "..") {
		return fmt.Errorf("%s %q must start with a letter or digit and have no empty label", what, s)
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return fmt.Errorf("%s %q has the character %q: use letters, digits, '-', '_' and '.'", what, s, r)
		}
	}
	return nil
}

// IssueOptions configures leaf issuance. Zero values mean defaults.
type IssueOptions struct {
	// KeyType is one of the Key* constants (default ecdsa-p256).
	KeyType string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand is the randomness for serials and signatures (default
	// crypto/rand.Reader). It must be safe for concurrent use when leaves
	// are issued in parallel (Generate serialises a non-default one).
	Rand io.Reader
	// KeyGen makes the leaf keys (default GenerateKey).
	KeyGen KeyGen
}

// Leaf is an issued node certificate and its key.
type Leaf struct {
	CertPEM []byte
	KeyPEM  []byte
	Cert    *x509.Certificate
	// Spec is what the leaf was issued for (normalised).
	Spec LeafSpec
}

// Fingerprint is the SHA-256 fingerprint of the leaf certificate.
func (l *Leaf) Fingerprint() string { return CertFingerprint(l.Cert.Raw) }

// Issue makes a key and a certificate for spec, signed by c, following
// Consul's conventions: CN and DNS SANs as LeafSpec.DNSNames, IP SANs
// 127.0.0.1 plus the node's addresses, extended key usage serverAuth and
// clientAuth (agents are both), a 128-bit random serial, NotBefore a minute
// back for clock skew.
func (c *CA) Issue(spec LeafSpec, o IssueOptions) (*Leaf, error) {
	sp, err := spec.normalize()
	if err != nil {
		return nil, err
	}
	if err := CheckKeyType(o.KeyType); err != nil {
		return nil, fmt.Errorf("node %q: %w", sp.Node, err)
	}
	if err := c.permits(sp); err != nil {
		return nil, err
	}
	now, r, gen := withDefaults(o.Now, o.Rand, o.KeyGen)
	fail := func(err error) (*Leaf, error) {
		return nil, fmt.Errorf("issue certificate for node %q: %w", sp.Node, err)
	}
	key, err := gen(cmp(o.KeyType, KeyECDSAP256))
	if err != nil {
		return fail(fmt.Errorf("generate key: %w", err))
	}
	serial, err := newSerial(r)
	if err != nil {
		return fail(err)
	}
	id, err := keyID(key.Public())
	if err != nil {
		return fail(err)
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, a := range sp.Addresses {
		if ip := net.ParseIP(a); !ip.Equal(ips[0]) {
			ips = append(ips, ip)
		}
	}
	t0 := now().UTC()
	notAfter := t0.AddDate(0, 0, sp.Days)
	if notAfter.After(c.Cert.NotAfter) {
		notAfter = c.Cert.NotAfter
	}
	if !notAfter.After(t0) {
		return fail(fmt.Errorf("%w: fingerprint %s, expired on %s", ErrCAExpired, c.Fingerprint(), c.Cert.NotAfter.Format(time.DateOnly)))
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := key.(*rsa.PrivateKey); ok {
		// RSA key exchange (TLS 1.2 without ECDHE) encrypts with the key.
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: sp.Name()},
		NotBefore:             t0.Add(-clockSkew),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:              sp.DNSNames(),
		IPAddresses:           ips,
		SubjectKeyId:          id,
		AuthorityKeyId:        c.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(r, tmpl, c.Cert, key.Public(), c.signer)
	if err != nil {
		return fail(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fail(err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return fail(err)
	}
	return &Leaf{CertPEM: certPEM(der), KeyPEM: keyPEM, Cert: cert, Spec: sp}, nil
}

// permits checks the DNS names of sp against the CA's name constraints, so
// that a domain the CA may not sign fails here, naming the node, rather
// than on every node's TLS handshake.
func (c *CA) permits(sp LeafSpec) error {
	permitted := c.Cert.PermittedDNSDomains
	if len(permitted) == 0 {
		return nil
	}
	for _, name := range sp.DNSNames() {
		ok := false
		for _, p := range permitted {
			p = strings.TrimPrefix(p, ".")
			if strings.EqualFold(name, p) || strings.HasSuffix(strings.ToLower(name), "."+strings.ToLower(p)) {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("%w: node %q: the CA (fingerprint %s) may only sign names under %s, not %q: "+
				"set consul.domain to one of those, or roll over to a CA without name constraints",
				ErrInvalidSpec, sp.Node, c.Fingerprint(), strings.Join(permitted, ", "), name)
		}
	}
	return nil
}
