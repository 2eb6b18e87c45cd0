package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"
)

// CA errors.
var (
	// ErrNoCA means the state directory holds no CA yet.
	ErrNoCA = errors.New("no CA in the state directory")
	// ErrCAExists means a CA already exists and would be replaced.
	ErrCAExists = errors.New("a CA already exists")
	// ErrInvalidCA means an imported certificate or key is not a usable CA.
	ErrInvalidCA = errors.New("not a usable CA")
)

// Defaults, as `consul tls ca create` and `consul tls cert create` use them.
const (
	DefaultCADays   = 1825
	DefaultLeafDays = 365
	DefaultDomain   = "consul"
	// clockSkew backdates NotBefore so that a node whose clock is a little
	// behind the admin machine's accepts a fresh certificate.
	clockSkew = time.Minute
)

// CAOptions configures a new CA. Zero values mean Consul's defaults.
type CAOptions struct {
	// KeyType is one of the Key* constants (default ecdsa-p256).
	KeyType string
	// Days is the validity (default 1825, five years).
	Days int
	// Domain is the Consul domain (default consul); used by NameConstraints.
	Domain string
	// NameConstraints restricts the DNS names the CA may sign to Domain and
	// localhost, as `consul tls ca create -name-constraint` does. IP SANs
	// are left unconstrained, so that node addresses can be added.
	NameConstraints bool
	// CommonName defaults to "Consul Agent CA <serial>", as Consul names it.
	CommonName string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Rand is the randomness for the serial number and signature (default
	// crypto/rand.Reader).
	Rand io.Reader
	// KeyGen makes the key (default GenerateKey).
	KeyGen KeyGen
}

// CA is a loaded certificate authority. Its private key stays inside the
// package: use [CA.Issue].
type CA struct {
	// Cert is the parsed CA certificate.
	Cert *x509.Certificate
	// CertPEM is the certificate as stored (PEM).
	CertPEM []byte
	signer  crypto.Signer
	keyPEM  []byte
	fp      string
}

func newCAValue(cert *x509.Certificate, pemData []byte, key crypto.Signer, keyPEM []byte) *CA {
	return &CA{Cert: cert, CertPEM: pemData, signer: key, keyPEM: keyPEM, fp: CertFingerprint(cert.Raw)}
}

// Fingerprint is the SHA-256 fingerprint of the CA certificate (AB:CD:...).
func (c *CA) Fingerprint() string {
	if c.fp == "" {
		return CertFingerprint(c.Cert.Raw)
	}
	return c.fp
}

// newCA makes a CA in memory.
func newCA(o CAOptions) (*CA, error) {
	if err := CheckKeyType(o.KeyType); err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	if o.Days < 0 {
		return nil, fmt.Errorf("create CA: days must be positive, got %d", o.Days)
	}
	days := cmp(o.Days, DefaultCADays)
	domain := cmp(o.Domain, DefaultDomain)
	now, r, gen := withDefaults(o.Now, o.Rand, o.KeyGen)
	key, err := gen(cmp(o.KeyType, KeyECDSAP256))
	if err != nil {
		return nil, fmt.Errorf("create CA: generate key: %w", err)
	}
	serial, err := newSerial(r)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	id, err := keyID(key.Public())
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	t0 := now().UTC()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   cmp(o.CommonName, "Consul Agent CA "+serial.String()),
			Organization: []string{"mtlsctl"},
		},
		NotBefore:             t0.Add(-clockSkew),
		NotAfter:              t0.AddDate(0, 0, days),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// The CA signs leaves only: no intermediate below it.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:   id,
		AuthorityKeyId: id,
	}
	if o.NameConstraints {
		tmpl.PermittedDNSDomainsCritical = true
		tmpl.PermittedDNSDomains = []string{domain, "localhost"}
	}
	der, err := x509.CreateCertificate(r, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	return newCAValue(cert, certPEM(der), key, keyPEM), nil
}

// cmp returns v, or def when v is the zero value.
func cmp[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func (s *State) caFiles() (certPath, keyPath string) {
	return s.path(caDir, caCertFile), s.path(caDir, caKeyFile)
}

// caWrites lists the files that store c, key first: a crash between the two
// leaves a key without a certificate, which LoadCA reports, rather than a
// certificate whose key is lost.
func (s *State) caWrites(c *CA) []pendingFile {
	certPath, keyPath := s.caFiles()
	return []pendingFile{
		{path: keyPath, data: c.keyPEM, mode: secretMode},
		{path: certPath, data: c.CertPEM, mode: publicMode},
	}
}

// CreateCA makes a new CA and stores it. It refuses with ErrCAExists when
// the state directory already holds one (or part of one).
func (s *State) CreateCA(o CAOptions) (*CA, error) {
	if err := s.checkNoCA(); err != nil {
		return nil, err
	}
	c, err := newCA(o)
	if err != nil {
		return nil, err
	}
	if err := writeBatch(s.dir, s.caWrites(c)); err != nil {
		return nil, fmt.Errorf("store CA: %w", err)
	}
	return c, nil
}

func (s *State) checkNoCA() error {
	certPath, keyPath := s.caFiles()
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%w: %s", ErrCAExists, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check for a CA: %w", err)
		}
	}
	return nil
}

// LoadCA loads the stored CA. It returns ErrNoCA when there is none, and an
// error naming the file and what to do when a CA file is unreadable,
// corrupt or incomplete: it never regenerates over one.
func (s *State) LoadCA() (*CA, error) {
	certPath, keyPath := s.caFiles()
	certData, certErr := os.ReadFile(certPath)
	_, keyStatErr := os.Stat(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyStatErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoCA, certPath)
	case errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: %s exists without its certificate %s: an earlier run was interrupted while creating the CA "+
			"(no certificate was issued by it); remove the key file and run `mtlsctl generate` again, or restore the certificate from a backup",
			ErrCorrupt, keyPath, certPath)
	case certErr != nil:
		return nil, fmt.Errorf("read CA certificate: %w", certErr)
	case errors.Is(keyStatErr, fs.ErrNotExist):
		return nil, fmt.Errorf("%w: the CA key %s is missing (the certificate %s is there): restore the key from a backup; "+
			"without it no certificate can be issued, and replacing the CA means `mtlsctl rotate ca`", ErrCorrupt, keyPath, certPath)
	}
	cert, err := parseCert(certData)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v: restore it from a backup (every node trusts this CA; do not replace it by hand)", ErrCorrupt, certPath, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%w: %s is not a CA certificate (basic constraints CA:FALSE): restore the CA certificate from a backup", ErrCorrupt, certPath)
	}
	keyData, err := readSecret(keyPath)
	if err != nil {
		if errors.Is(err, ErrLoosePermissions) {
			return nil, err
		}
		return nil, fmt.Errorf("read CA key: %w", err)
	}
	key, err := parseKey(keyData)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v: restore it from a backup (do not delete it: it is the only key for this CA)", ErrCorrupt, keyPath, err)
	}
	if !keyMatches(key, cert.PublicKey) {
		return nil, fmt.Errorf("%w: %s does not match the certificate %s (fingerprint %s): restore the matching pair from a backup",
			ErrCorrupt, keyPath, certPath, CertFingerprint(cert.Raw))
	}
	return newCAValue(cert, certData, key, keyData), nil
}

// ImportCA stores an existing CA (e.g. made by `consul tls ca create`). It
// checks that the certificate is a CA allowed to sign certificates and that
// the key is its key. Importing the CA already stored is a no-op; a
// different one is refused with ErrCAExists.
func (s *State) ImportCA(certData, keyData []byte) (*CA, error) {
	cert, key, err := parseCAImport(certData, keyData)
	if err != nil {
		return nil, err
	}
	if cur, err := s.LoadCA(); err == nil {
		if bytes.Equal(cur.Cert.Raw, cert.Raw) {
			return cur, nil
		}
		return nil, fmt.Errorf("%w: %s (fingerprint %s) differs from the one imported (fingerprint %s)",
			ErrCAExists, s.path(caDir, caCertFile), cur.Fingerprint(), CertFingerprint(cert.Raw))
	} else if !errors.Is(err, ErrNoCA) {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	c := newCAValue(cert, certPEM(cert.Raw), key, keyPEM)
	if err := writeBatch(s.dir, s.caWrites(c)); err != nil {
		return nil, fmt.Errorf("store CA: %w", err)
	}
	return c, nil
}

// CheckImports says whether ImportGossipKey(gossipKey) and
// ImportCA(certData, keyData) would both succeed (an empty key or nil
// certificate is skipped), writing nothing: an import writes nothing
// unless everything it brings is valid and fits the state.
func (s *State) CheckImports(gossipKey string, certData, keyData []byte) error {
	if k := strings.TrimSpace(gossipKey); k != "" {
		if err := ValidateGossipKey(k); err != nil {
			return err
		}
		cur, err := s.Keyring()
		switch {
		case err == nil && cur.Primary != k:
			return fmt.Errorf("%w: %s holds key %s, the imported key is %s",
				ErrGossipExists, s.path(gossipFile), GossipFingerprint(cur.Primary), GossipFingerprint(k))
		case err != nil && !errors.Is(err, ErrNoGossipKey):
			return err
		}
	}
	if certData == nil {
		return nil
	}
	cert, _, err := parseCAImport(certData, keyData)
	if err != nil {
		return err
	}
	if cur, err := s.LoadCA(); err == nil && !bytes.Equal(cur.Cert.Raw, cert.Raw) {
		return fmt.Errorf("%w: %s (fingerprint %s) differs from the one imported (fingerprint %s)",
			ErrCAExists, s.path(caDir, caCertFile), cur.Fingerprint(), CertFingerprint(cert.Raw))
	} else if err != nil && !errors.Is(err, ErrNoCA) {
		return err
	}
	return nil
}

// ValidateCAImport checks what ImportCA would be given (a CA certificate
// and its key), without a state directory.
func ValidateCAImport(certData, keyData []byte) error {
	_, _, err := parseCAImport(certData, keyData)
	return err
}

// parseCAImport checks an imported CA certificate and its key.
func parseCAImport(certData, keyData []byte) (*x509.Certificate, crypto.Signer, error) {
	cert, err := parseCert(certData)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: certificate: %v", ErrInvalidCA, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, nil, fmt.Errorf("%w: certificate %q (fingerprint %s) is not a CA (basic constraints CA:TRUE missing)", ErrInvalidCA, cert.Subject, CertFingerprint(cert.Raw))
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, fmt.Errorf("%w: certificate %q (fingerprint %s) lacks the certificate-signing key usage", ErrInvalidCA, cert.Subject, CertFingerprint(cert.Raw))
	}
	key, err := parseKey(keyData)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: key: %v", ErrInvalidCA, err)
	}
	if !keyMatches(key, cert.PublicKey) {
		return nil, nil, fmt.Errorf("%w: the key does not belong to certificate %q (fingerprint %s): pass the key made with this certificate",
			ErrInvalidCA, cert.Subject, CertFingerprint(cert.Raw))
	}
	return cert, key, nil
}
