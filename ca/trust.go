package ca

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// TrustedCA is an extra CA certificate kept in the CA bundle during a
// rollover (ca/trust/<File>).
type TrustedCA struct {
	File    string
	Cert    *x509.Certificate
	CertPEM []byte
}

// TrustedCAs lists ca/trust/*.pem, sorted by file name.
func (s *State) TrustedCAs() ([]TrustedCA, error) {
	dir := s.path(caDir, trustDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list trusted CAs: %w", err)
	}
	var out []TrustedCA
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".pem") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read trusted CA: %w", err)
		}
		cert, err := parseCert(data)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v: fix or remove it (`mtlsctl rotate ca` manages this directory)", ErrCorrupt, path, err)
		}
		out = append(out, TrustedCA{File: e.Name(), Cert: cert, CertPEM: certPEM(cert.Raw)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].File < out[j].File })
	return out, nil
}

// AddTrustedCA adds a CA certificate to the trust list (a no-op when it is
// already there) and returns its file name.
func (s *State) AddTrustedCA(certData []byte) (string, error) {
	cert, err := parseCert(certData)
	if err != nil {
		return "", fmt.Errorf("%w: certificate: %v", ErrInvalidCA, err)
	}
	if !cert.IsCA {
		return "", fmt.Errorf("%w: certificate %q (fingerprint %s) is not a CA", ErrInvalidCA, cert.Subject, CertFingerprint(cert.Raw))
	}
	cur, err := s.TrustedCAs()
	if err != nil {
		return "", err
	}
	for _, t := range cur {
		if bytes.Equal(t.Cert.Raw, cert.Raw) {
			return t.File, nil
		}
	}
	name := trustName(cert)
	if err := writeBatch(s.dir, []pendingFile{{path: s.path(caDir, trustDir, name), data: certPEM(cert.Raw), mode: publicMode}}); err != nil {
		return "", err
	}
	return name, nil
}

// trustName names a trusted CA file by issue date then fingerprint, so the
// bundle order is stable and oldest first.
func trustName(cert *x509.Certificate) string {
	fp := strings.ReplaceAll(CertFingerprint(cert.Raw), ":", "")
	return cert.NotBefore.UTC().Format("20060102") + "-" + strings.ToLower(fp[:16]) + ".pem"
}

// RemoveTrustedCA removes the trusted CA whose fingerprint is fp (AB:CD:...
// or a unique prefix of it); it is an error when none or several match.
func (s *State) RemoveTrustedCA(fp string) error {
	cur, err := s.TrustedCAs()
	if err != nil {
		return err
	}
	want := strings.ToUpper(strings.ReplaceAll(fp, ":", ""))
	var match []TrustedCA
	for _, t := range cur {
		if want != "" && strings.HasPrefix(strings.ReplaceAll(CertFingerprint(t.Cert.Raw), ":", ""), want) {
			match = append(match, t)
		}
	}
	switch len(match) {
	case 0:
		return fmt.Errorf("no trusted CA has fingerprint %s (see `mtlsctl certs check-expiration`)", fp)
	case 1:
	default:
		return fmt.Errorf("fingerprint %s matches %d trusted CAs: give more of it", fp, len(match))
	}
	dir := s.path(caDir, trustDir)
	if err := os.Remove(filepath.Join(dir, match[0].File)); err != nil {
		return fmt.Errorf("remove trusted CA: %w", err)
	}
	return syncDir(dir)
}

// CABundle returns the PEM bundle the nodes must trust: the current CA,
// then the trusted CAs, without duplicates.
func (s *State) CABundle() ([]byte, error) {
	c, err := s.LoadCA()
	if err != nil {
		return nil, err
	}
	return s.caBundle(c)
}

func (s *State) caBundle(c *CA) ([]byte, error) {
	trusted, err := s.TrustedCAs()
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), certPEM(c.Cert.Raw)...)
	for _, t := range trusted {
		if !bytes.Equal(t.Cert.Raw, c.Cert.Raw) {
			out = append(out, t.CertPEM...)
		}
	}
	return out, nil
}

// RotateCA starts a CA rollover: the current CA is copied to
// ca/archive/<date>-<serial>/, its certificate added to the trust list (so
// nodes keep trusting leaves it issued), and a new CA made from o replaces
// it. The next Generate reissues every leaf from the new CA; once every
// node has its new leaf, RemoveTrustedCA drops the old CA. It returns the
// old and the new CA.
func (s *State) RotateCA(o CAOptions) (old, cur *CA, err error) {
	old, err = s.LoadCA()
	if err != nil {
		return nil, nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	cur, err = newCA(o)
	if err != nil {
		return nil, nil, err
	}
	archive := s.path(caDir, archiveDir, o.Now().UTC().Format("20060102T150405Z")+"-"+strings.ToLower(serialHex(old.Cert)))
	// Archive and trust first: a crash before the new CA is in place leaves
	// the old CA current and still usable.
	if err := writeBatch(s.dir, []pendingFile{
		{path: filepath.Join(archive, caKeyFile), data: old.keyPEM, mode: secretMode},
		{path: filepath.Join(archive, caCertFile), data: old.CertPEM, mode: publicMode},
	}); err != nil {
		return nil, nil, fmt.Errorf("archive the old CA: %w", err)
	}
	if _, err := s.AddTrustedCA(old.CertPEM); err != nil {
		return nil, nil, fmt.Errorf("trust the old CA: %w", err)
	}
	if err := writeBatch(s.dir, s.caWrites(cur)); err != nil {
		return nil, nil, fmt.Errorf("store the new CA: %w", err)
	}
	return old, cur, nil
}
