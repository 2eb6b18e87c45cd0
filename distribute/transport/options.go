package transport

import (
	"context"
	"net"
	"os"
	"time"
)

// Options say how to reach the nodes.
type Options struct {
	// Concurrency bounds how many nodes are worked on at once (default 20).
	Concurrency int
	// ConnectTimeout bounds each step of reaching a node, on every hop
	// (bastion or node): the TCP connect, the channel open through the
	// bastion before it, the SSH handshake and login (default 15s).
	ConnectTimeout time.Duration
	// StepTimeout bounds every later step on a node: one script, one upload
	// batch, one download batch (default 2m).
	StepTimeout time.Duration

	// KnownHostsFiles replaces the default known_hosts files (the cluster's
	// file, ~/.ssh/known_hosts, /etc/ssh/ssh_known_hosts). Files that do not
	// exist are skipped.
	KnownHostsFiles []string
	// AcceptNewHostKeys records the key of a host known_hosts does not know
	// in the cluster's known_hosts file (default ~/.ssh/known_hosts). A
	// changed key is always refused.
	AcceptNewHostKeys bool
	// IdentityFiles are private keys to offer, in addition to the cluster's
	// identity_file and ~/.ssh/config's IdentityFile.
	IdentityFiles []string
	// UseAgent offers the keys of the ssh-agent at $SSH_AUTH_SOCK first.
	UseAgent bool
	// HomeDir replaces the user's home directory (for ~/.ssh/config,
	// ~/.ssh/known_hosts and ~ in paths); tests point it at a temp dir.
	HomeDir string
	// Passphrase is asked for the passphrase of an encrypted identity file.
	// It is called at most once per file; the answer is never logged.
	Passphrase func(file string) ([]byte, error)

	// Progress receives per-node progress events (optional).
	Progress Reporter

	// Dial replaces the TCP dialer (tests, proxies). Nil: net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// WithDefaults fills in the zero fields.
func (o Options) WithDefaults() Options {
	if o.Concurrency <= 0 {
		o.Concurrency = 20
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 15 * time.Second
	}
	if o.StepTimeout <= 0 {
		o.StepTimeout = 2 * time.Minute
	}
	if o.HomeDir == "" {
		o.HomeDir, _ = os.UserHomeDir()
	}
	return o
}

// Event is one progress step on one node.
type Event struct {
	Node  string
	Step  string // connect, inspect, lock, stage, verify, validate, commit, reload, restart, cleanup, done
	Msg   string // short human text; never a secret
	Files int    // files concerned, when known
	Err   error
	Time  time.Time
}

// Reporter receives progress events; it is called from many goroutines.
type Reporter interface {
	Report(Event)
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(Event)

// Report calls f(e).
func (f ReporterFunc) Report(e Event) { f(e) }
