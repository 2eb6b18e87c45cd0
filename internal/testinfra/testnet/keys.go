package testnet

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
)

// writeKeyPair generates an ed25519 key, writes the private half to path
// (0600, OpenSSH format) and the public half to path+".pub", and returns a
// signer for it.
func writeKeyPair(path, comment string) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("encode key for %s: %w", path, err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " " + comment + "\n"
	if err := os.WriteFile(path+".pub", []byte(pub), 0o644); err != nil {
		return nil, err
	}
	return signer, nil
}

// knownHostsLine is one known_hosts entry for a host on port 22.
func knownHostsLine(addr string, key ssh.PublicKey) string {
	return addr + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))) + "\n"
}
