package consulcfg

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"sort"
)

// Kind says what a bundle file holds, so that tools can decide how to show it
// (diff for config, fingerprint for certificates, never the content of a key)
// and what a change to it needs (reload or restart).
type Kind string

// File kinds.
const (
	KindConfig  Kind = "config"  // Consul agent config (JSON)
	KindService Kind = "service" // service + sidecar definitions (JSON)
	KindCACert  Kind = "ca-cert" // CA certificate bundle (PEM)
	KindCert    Kind = "cert"    // the node's leaf certificate (PEM)
	KindKey     Kind = "key"     // the node's private key (PEM): secret
	KindUnit    Kind = "unit"    // a systemd unit (mesh proxies, firewall)
	KindToken   Kind = "token"   // a proxy's ACL token file: secret
	KindOther   Kind = "other"   // firewall rules and script, port report, ...
)

// File is one file a node must hold, exactly.
type File struct {
	Path    string      `json:"path"` // absolute path on the node
	Content []byte      `json:"-"`
	Mode    fs.FileMode `json:"mode"`
	Owner   string      `json:"owner,omitempty"` // "" = leave to the remote user
	Group   string      `json:"group,omitempty"`
	Kind    Kind        `json:"kind"`
	SHA256  string      `json:"sha256"` // hex of Content
}

// Secret reports whether the content must never be shown or logged.
func (f File) Secret() bool { return f.Kind == KindKey || f.Kind == KindToken }

// Bundle is everything one node must hold: the one currency between
// consulcfg (which makes bundles from pure data) and distribute (which moves
// them and never decides what goes in them).
type Bundle struct {
	Node       string `json:"node"`
	Datacenter string `json:"datacenter"`
	Server     bool   `json:"server"`
	Files      []File `json:"files"` // sorted by Path
	// Mesh lists the proxies to run and the firewall to load; nil when the
	// mesh is disabled. Everything in it is derived from Files.
	Mesh *Mesh `json:"mesh,omitempty"`
	// Generation is a hash over every file's path, mode, owner and content:
	// two bundles with the same generation are byte-for-byte the same.
	Generation string `json:"generation"`
}

// NewFile builds a File and fills in its hash.
func NewFile(path string, content []byte, mode fs.FileMode, kind Kind) File {
	sum := sha256.Sum256(content)
	return File{Path: path, Content: content, Mode: mode, Kind: kind, SHA256: hex.EncodeToString(sum[:])}
}

// Seal sorts the files by path and computes the generation.
func (b *Bundle) Seal() {
	sort.Slice(b.Files, func(i, j int) bool { return b.Files[i].Path < b.Files[j].Path })
	h := sha256.New()
	for _, f := range b.Files {
		h.Write([]byte(f.Path))
		h.Write([]byte{0})
		h.Write([]byte(f.Mode.String() + "\x00" + f.Owner + "\x00" + f.Group + "\x00" + f.SHA256 + "\n"))
	}
	b.Generation = hex.EncodeToString(h.Sum(nil))[:16]
}

// File returns the bundle's file at path, or nil.
func (b *Bundle) File(path string) *File {
	for i := range b.Files {
		if b.Files[i].Path == path {
			return &b.Files[i]
		}
	}
	return nil
}
