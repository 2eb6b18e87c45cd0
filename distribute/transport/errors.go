package transport

import (
	"errors"

	"github.com/mtlsctl/mtlsctl/inventory"
)

// Sentinel errors, wrapped with the node's details. The ones about host keys
// and authentication must not be retried: the user has to act.
var (
	// ErrHostKeyMismatch: the node offered a host key other than the one
	// known_hosts records. Never overridden by any option.
	ErrHostKeyMismatch = errors.New("host key mismatch")
	// ErrUnknownHost: known_hosts has no key for the node (see
	// Options.AcceptNewHostKeys).
	ErrUnknownHost = errors.New("unknown host")
	// ErrAuth: the node refused every key offered (permission denied, wrong
	// key) or no usable key was found.
	ErrAuth = errors.New("ssh authentication failed")
	// ErrUnreachable: no SSH connection could be made or it was lost.
	ErrUnreachable = errors.New("unreachable")
	// ErrTimeout: a step took longer than its deadline.
	ErrTimeout = errors.New("timed out")
	// ErrNotRegular: Download found a symbolic link or something else
	// than a regular file, and did not read it.
	ErrNotRegular = errors.New("not a regular file")
	// ErrTooLarge: Download found a file larger than its limit, and did
	// not read it.
	ErrTooLarge = errors.New("too large")
)

// NodeError is the program's one per-node error type.
type NodeError = inventory.NodeError

// WrapNode is inventory.WrapNode.
func WrapNode(node, op string, err error) error { return inventory.WrapNode(node, op, err) }
