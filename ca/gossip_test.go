package ca

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGossipKey(t *testing.T) {
	k, err := NewGossipKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := base64.StdEncoding.DecodeString(k); err != nil || len(b) != 32 {
		t.Errorf("key decodes to %d bytes (%v), want 32", len(b), err)
	}
	if _, err := NewGossipKey(bytes.NewReader(make([]byte, 5))); err == nil {
		t.Error("short reader: no error")
	}
	fp := GossipFingerprint(k)
	if !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+16 || strings.Contains(fp, k) || fp != GossipFingerprint(" "+k+"\n") {
		t.Errorf("fingerprint %q", fp)
	}
	// The one definition shared with consulcfg and status: SHA-256 of the
	// decoded bytes (here 0..31).
	if got := GossipFingerprint("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="); got != "sha256:630dcd2966c43366" {
		t.Errorf("GossipFingerprint = %s, want sha256:630dcd2966c43366", got)
	}
	tests := []struct {
		name string
		key  string
		ok   bool
	}{
		{"32 bytes", base64.StdEncoding.EncodeToString(make([]byte, 32)), true},
		{"24 bytes", base64.StdEncoding.EncodeToString(make([]byte, 24)), true},
		{"16 bytes", base64.StdEncoding.EncodeToString(make([]byte, 16)), true},
		{"31 bytes", base64.StdEncoding.EncodeToString(make([]byte, 31)), false},
		{"url base64", base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)), false},
		{"empty", "", false},
		{"text", "not a key at all!", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateGossipKey(tc.key)
			if (err == nil) != tc.ok {
				t.Fatalf("ValidateGossipKey: %v, want ok=%v", err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidGossipKey) {
					t.Errorf("error %v, want ErrInvalidGossipKey", err)
				}
				noSecret(t, err.Error(), tc.key)
			}
		})
	}
}

func TestKeyring(t *testing.T) {
	k1, _ := NewGossipKey(nil)
	k2, _ := NewGossipKey(nil)
	t.Run("none", func(t *testing.T) {
		if _, err := newState(t).Keyring(); !errors.Is(err, ErrNoGossipKey) {
			t.Errorf("error %v, want ErrNoGossipKey", err)
		}
	})
	t.Run("round trip", func(t *testing.T) {
		s := newState(t)
		kr := &Keyring{Primary: k2, Previous: []string{k1}}
		if err := s.SetKeyring(kr); err != nil {
			t.Fatal(err)
		}
		if got := mode(t, filepath.Join(s.Dir(), gossipFile)); got != 0o600 {
			t.Errorf("mode %04o, want 0600", got)
		}
		got, err := s.Keyring()
		if err != nil || got.Primary != k2 || len(got.Previous) != 1 || got.Previous[0] != k1 {
			t.Errorf("keyring %v, %v", got != nil, err)
		}
		if keys := got.Keys(); len(keys) != 2 || keys[0] != k2 {
			t.Error("Keys: primary first")
		}
	})
	t.Run("invalid keyring refused", func(t *testing.T) {
		err := newState(t).SetKeyring(&Keyring{Primary: k1, Previous: []string{"bad"}})
		if !errors.Is(err, ErrInvalidGossipKey) || !strings.Contains(err.Error(), "previous key 1") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("corrupt file", func(t *testing.T) {
		s := newState(t)
		os.WriteFile(filepath.Join(s.Dir(), gossipFile), []byte(`{"primary": "`+k1+`"`), 0o600)
		_, err := s.Keyring()
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), gossipFile) {
			t.Errorf("error %v", err)
		}
		noSecret(t, err.Error(), k1)
	})
	t.Run("import", func(t *testing.T) {
		s := newState(t)
		if err := s.ImportGossipKey(k1 + "\n"); err != nil {
			t.Fatal(err)
		}
		if err := s.ImportGossipKey(k1); err != nil {
			t.Errorf("same key again: %v", err)
		}
		err := s.ImportGossipKey(k2)
		if !errors.Is(err, ErrGossipExists) || !strings.Contains(err.Error(), GossipFingerprint(k1)) {
			t.Errorf("different key: %v, want ErrGossipExists naming the fingerprint", err)
		}
		noSecret(t, err.Error(), k1, k2)
		if err := s.ImportGossipKey("bad"); !errors.Is(err, ErrInvalidGossipKey) {
			t.Errorf("bad key: %v", err)
		}
		if kr, _ := s.Keyring(); kr.Primary != k1 {
			t.Error("key replaced")
		}
	})
}
