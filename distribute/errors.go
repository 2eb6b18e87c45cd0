package distribute

import (
	"errors"
	"fmt"
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
	// ErrLocked: another apply holds the node's lock.
	ErrLocked = errors.New("node is locked by another apply")
	// ErrVerify: a staged file's SHA-256 on the node is not the bundle's.
	ErrVerify = errors.New("staged file does not match the bundle")
	// ErrAborted: the apply stopped because another node failed; this node
	// was left unchanged.
	ErrAborted = errors.New("apply aborted, node left unchanged")
)

// NodeError is the error of one step on one node.
type NodeError struct {
	Node string // node name from the cluster file
	Step string // connect, inspect, lock, stage, verify, validate, commit, reload, cleanup, ...
	Err  error
}

func (e *NodeError) Error() string { return fmt.Sprintf("node %s: %s: %v", e.Node, e.Step, e.Err) }

// Unwrap returns the cause.
func (e *NodeError) Unwrap() error { return e.Err }

func nodeErr(node, step string, err error) error {
	if err == nil {
		return nil
	}
	var ne *NodeError
	if errors.As(err, &ne) && ne.Node == node {
		return err
	}
	return &NodeError{Node: node, Step: step, Err: err}
}

// errString is err's message or "" for nil, for JSON reports.
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
