package ca

import (
	"crypto/x509"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// CertStatus is the expiry of one certificate.
type CertStatus struct {
	// Name says which certificate: "ca", "trusted-ca <file>" or a node name.
	Name        string    `json:"name"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"` // uppercase hex, as `openssl x509 -serial`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	DaysLeft    int       `json:"days_left"` // negative once expired
	Expired     bool      `json:"expired"`
	IsCA        bool      `json:"is_ca"`
	Fingerprint string    `json:"fingerprint"`
}

// Status returns the expiry status of cert at now.
func Status(cert *x509.Certificate, now time.Time) CertStatus {
	return CertStatus{
		Subject:     cert.Subject.String(),
		Issuer:      cert.Issuer.String(),
		Serial:      serialHex(cert),
		NotBefore:   cert.NotBefore,
		NotAfter:    cert.NotAfter,
		DaysLeft:    daysLeft(cert.NotAfter, now),
		Expired:     !now.Before(cert.NotAfter),
		IsCA:        cert.IsCA,
		Fingerprint: CertFingerprint(cert.Raw),
	}
}

// ParseCertStatus parses the first certificate of a PEM file (e.g. read
// from a node) and returns its expiry status at now; Name is left empty.
func ParseCertStatus(pemData []byte, now time.Time) (CertStatus, error) {
	cert, err := parseCert(pemData)
	if err != nil {
		return CertStatus{}, fmt.Errorf("parse certificate: %w", err)
	}
	return Status(cert, now), nil
}

// Expiry reports, at now, the CA, the extra trusted CAs (those of a
// rollover, still in the CA bundle) and the stored certificates of the
// nodes of t (sorted by node name). Nodes no longer in t are left out: the
// cluster does not use their certificates (the next generate archives
// them). A node of t without a certificate has no row. With t nil, every
// stored node is reported.
func (s *State) Expiry(t *inventory.Topology, now time.Time) ([]CertStatus, error) {
	c, err := s.LoadCA()
	if err != nil {
		return nil, err
	}
	st := Status(c.Cert, now)
	st.Name = "ca"
	out := []CertStatus{st}
	trusted, err := s.TrustedCAs()
	if err != nil {
		return nil, err
	}
	for _, t := range trusted {
		st := Status(t.Cert, now)
		st.Name = "trusted-ca " + t.File
		out = append(out, st)
	}
	nodes, err := s.storedNodes()
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range nodes {
		if t != nil && t.Node(n) == nil {
			continue
		}
		l, err := s.readLeaf(n)
		if err != nil {
			return nil, err
		}
		if l == nil || l.leaf == nil {
			continue
		}
		st := Status(l.leaf.Cert, now)
		st.Name = n
		out = append(out, st)
	}
	return out, nil
}

// DaysLeft is the number of whole days from now to t, rounded down
// (negative once t has passed), as CertStatus counts them.
func DaysLeft(t, now time.Time) int { return daysLeft(t, now) }

// daysLeft is the number of whole days from now to t (rounded down, so
// negative once t has passed).
func daysLeft(t, now time.Time) int {
	return int(math.Floor(t.Sub(now).Hours() / 24))
}

func serialHex(cert *x509.Certificate) string {
	return strings.ToUpper(cert.SerialNumber.Text(16))
}
