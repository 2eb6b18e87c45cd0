package ca

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/mtlsctl/mtlsctl/internal/fingerprint"
)

// Gossip errors.
var (
	// ErrNoGossipKey means the state directory holds no gossip keyring yet.
	ErrNoGossipKey = errors.New("no gossip key in the state directory")
	// ErrGossipExists means a different gossip key is already stored.
	ErrGossipExists = errors.New("a different gossip key already exists")
	// ErrInvalidGossipKey means a key is not base64 of 16, 24 or 32 bytes.
	ErrInvalidGossipKey = errors.New("invalid gossip key")
)

// NewGossipKey makes a gossip encryption key as `consul keygen` does: 32
// random bytes (AES-256), standard base64. r defaults to crypto/rand.Reader.
func NewGossipKey(r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("generate gossip key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b[:]), nil
}

// ValidateGossipKey checks that k is standard base64 of 16, 24 or 32 bytes
// (AES-128/192/256, what memberlist accepts). The error never quotes k.
func ValidateGossipKey(k string) error {
	b, err := base64.StdEncoding.DecodeString(k)
	if err != nil {
		return fmt.Errorf("%w (fingerprint %s): not standard base64: make one with `consul keygen`", ErrInvalidGossipKey, GossipFingerprint(k))
	}
	switch len(b) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("%w (fingerprint %s): decodes to %d bytes, want 16, 24 or 32: make one with `consul keygen`",
		ErrInvalidGossipKey, GossipFingerprint(k), len(b))
}

// GossipFingerprint identifies a gossip key without revealing it:
// "sha256:" and the first 16 hex digits of the SHA-256 of the decoded key,
// the one form mtlsctl prints everywhere (see [fingerprint.Gossip]).
func GossipFingerprint(k string) string { return fingerprint.Gossip(k) }

// Keyring is the gossip keyring: the primary key every agent encrypts with,
// and the previous keys still installed during a rotation.
type Keyring struct {
	Primary  string   `json:"primary"`
	Previous []string `json:"previous,omitempty"`
	// Pending is the new key of a gossip rotation in progress (`mtlsctl
	// rotate gossip`): being installed on the cluster, not yet primary. It
	// is kept here, in the one secret file, so that an interrupted rotation
	// resumes with the same key. Nodes' configs keep Primary until the
	// rotation makes Pending the primary.
	Pending string `json:"pending,omitempty"`
}

// Validate checks every key of the keyring.
func (k *Keyring) Validate() error {
	if k == nil || k.Primary == "" {
		return fmt.Errorf("%w: the keyring has no primary key", ErrInvalidGossipKey)
	}
	if err := ValidateGossipKey(k.Primary); err != nil {
		return fmt.Errorf("primary key: %w", err)
	}
	for i, p := range k.Previous {
		if err := ValidateGossipKey(p); err != nil {
			return fmt.Errorf("previous key %d: %w", i+1, err)
		}
	}
	if k.Pending != "" {
		if err := ValidateGossipKey(k.Pending); err != nil {
			return fmt.Errorf("pending key: %w", err)
		}
		if k.Pending == k.Primary {
			return fmt.Errorf("%w: the pending key (fingerprint %s) is already the primary key", ErrInvalidGossipKey, GossipFingerprint(k.Pending))
		}
	}
	return nil
}

// Keys returns the primary key followed by the previous keys.
func (k *Keyring) Keys() []string { return append([]string{k.Primary}, k.Previous...) }

// Keyring loads the gossip keyring (ErrNoGossipKey when there is none).
func (s *State) Keyring() (*Keyring, error) {
	path := s.path(gossipFile)
	data, err := readSecret(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoGossipKey, path)
	}
	if err != nil {
		return nil, err
	}
	var k Keyring
	if err := json.Unmarshal(data, &k); err != nil {
		// json errors can quote input: give only the position.
		var se *json.SyntaxError
		where := ""
		if errors.As(err, &se) {
			where = fmt.Sprintf(" at byte %d", se.Offset)
		}
		return nil, fmt.Errorf("%w: %s: not valid JSON%s: restore it from a backup "+
			"(the nodes hold the key: `mtlsctl rotate gossip` can install a new one)", ErrCorrupt, path, where)
	}
	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w: restore it from a backup", ErrCorrupt, path, err)
	}
	return &k, nil
}

// SetKeyring validates and stores the keyring (0600).
func (s *State) SetKeyring(k *Keyring) error {
	if err := k.Validate(); err != nil {
		return err
	}
	return writeBatch(s.dir, []pendingFile{s.keyringWrite(k)})
}

func (s *State) keyringWrite(k *Keyring) pendingFile {
	data, _ := json.MarshalIndent(k, "", "  ")
	return pendingFile{path: s.path(gossipFile), data: append(data, '\n'), mode: secretMode}
}

// ImportGossipKey stores k (e.g. ENCRYPT_DATA from an Apigee silent config)
// as the primary key. Importing the key already stored is a no-op; a
// different one is refused with ErrGossipExists (rotate instead).
func (s *State) ImportGossipKey(k string) error {
	k = strings.TrimSpace(k)
	if err := ValidateGossipKey(k); err != nil {
		return err
	}
	cur, err := s.Keyring()
	switch {
	case err == nil && cur.Primary == k:
		return nil
	case err == nil:
		return fmt.Errorf("%w: %s holds key %s, the imported key is %s",
			ErrGossipExists, s.path(gossipFile), GossipFingerprint(cur.Primary), GossipFingerprint(k))
	case !errors.Is(err, ErrNoGossipKey):
		return err
	}
	return s.SetKeyring(&Keyring{Primary: k})
}
