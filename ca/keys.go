package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strings"
	"time"

	"github.com/mtlsctl/mtlsctl/internal/fingerprint"
)

// Key types accepted by CAOptions.KeyType and IssueOptions.KeyType. ECDSA
// P-256 is Consul's default and ~4,000 times cheaper to generate than RSA-2048.
const (
	KeyECDSAP256 = "ecdsa-p256"
	KeyECDSAP384 = "ecdsa-p384"
	KeyRSA2048   = "rsa-2048"
	KeyRSA4096   = "rsa-4096"
)

// ErrKeyType means an unknown key type was asked for.
var ErrKeyType = errors.New("unknown key type")

// KeyGen makes a new private key of the given type (one of the Key*
// constants). It is injectable so that tests are fast and can make key
// generation fail; it must be safe for concurrent use.
type KeyGen func(keyType string) (crypto.Signer, error)

// GenerateKey is the default KeyGen, using crypto/rand.
func GenerateKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case "", KeyECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case KeyRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case KeyRSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("%w %q: use %s, %s, %s or %s", ErrKeyType, keyType, KeyECDSAP256, KeyECDSAP384, KeyRSA2048, KeyRSA4096)
}

// CheckKeyType returns an error matching ErrKeyType unless GenerateKey
// makes keys of keyType ("" is the default, ECDSA P-256).
func CheckKeyType(keyType string) error {
	switch keyType {
	case "", KeyECDSAP256, KeyECDSAP384, KeyRSA2048, KeyRSA4096:
		return nil
	}
	return fmt.Errorf("%w %q: use %s, %s, %s or %s", ErrKeyType, keyType, KeyECDSAP256, KeyECDSAP384, KeyRSA2048, KeyRSA4096)
}

// newSerial returns a random serial number of exactly 128 bits (the top bit
// set, 127 random bits): RFC 5280 allows up to 20 octets, and the CA/Browser
// baseline asks for at least 64 bits of entropy.
func newSerial(r io.Reader) (*big.Int, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	b[0] |= 0x80
	return new(big.Int).SetBytes(b[:]), nil
}

// keyID is the subject key identifier of pub: the SHA-256 of the
// subjectPublicKey bits truncated to 160 bits (RFC 7093, method 1).
func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// encodeKey PEM-encodes a private key the way Consul writes it: SEC1
// ("EC PRIVATE KEY") for ECDSA, PKCS#1 for RSA, PKCS#8 otherwise.
func encodeKey(k crypto.Signer) ([]byte, error) {
	var block pem.Block
	var err error
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		block.Type = "EC PRIVATE KEY"
		block.Bytes, err = x509.MarshalECPrivateKey(k)
	case *rsa.PrivateKey:
		block.Type = "RSA PRIVATE KEY"
		block.Bytes = x509.MarshalPKCS1PrivateKey(k)
	default:
		block.Type = "PRIVATE KEY"
		block.Bytes, err = x509.MarshalPKCS8PrivateKey(k)
	}
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&block), nil
}

// parseKey decodes a PEM private key (SEC1, PKCS#1 or PKCS#8). Its errors
// never quote the input.
func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	var key any
	var err error
	var kind string
	switch block.Type {
	case "EC PRIVATE KEY":
		kind = "SEC1 EC key"
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		kind = "PKCS#1 RSA key"
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		kind = "PKCS#8 key"
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		if strings.Contains(block.Type, "ENCRYPTED") {
			return nil, errors.New("the key is encrypted: decrypt it first (e.g. `openssl pkey -in KEY -out PLAIN`)")
		}
		return nil, fmt.Errorf("PEM block is %q, not a key", block.Type)
	}
	if err != nil {
		// The parser's message is ASN.1 detail that helps nobody here.
		return nil, fmt.Errorf("malformed %s", kind)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", key)
}

// parseCert decodes the first PEM certificate in data.
func parseCert(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM certificate found")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// keyMatches reports whether key is the private half of pub.
func keyMatches(key crypto.Signer, pub crypto.PublicKey) bool {
	k, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(pub)
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// withDefaults fills in the clock, randomness and key generator that
// CAOptions and IssueOptions leave nil: time.Now, crypto/rand.Reader and
// GenerateKey.
func withDefaults(now func() time.Time, r io.Reader, gen KeyGen) (func() time.Time, io.Reader, KeyGen) {
	if now == nil {
		now = time.Now
	}
	if r == nil {
		r = rand.Reader
	}
	if gen == nil {
		gen = GenerateKey
	}
	return now, r, gen
}

// CertFingerprint is the SHA-256 fingerprint of a DER certificate, as
// `openssl x509 -noout -fingerprint -sha256` prints it (AB:CD:...): see
// [fingerprint.Cert].
func CertFingerprint(der []byte) string { return fingerprint.Cert(der) }
