package distribute

import (
	"errors"

	"github.com/mtlsctl/mtlsctl/distribute/transport"
)

// Sentinel errors, wrapped with the node's details. The transport's are
// repeated here so that callers of distribute need not import it. The ones
// about host keys and authentication must not be retried: the user has to act.
var (
	ErrHostKeyMismatch = transport.ErrHostKeyMismatch
	ErrUnknownHost     = transport.ErrUnknownHost
	ErrAuth            = transport.ErrAuth
	ErrUnreachable     = transport.ErrUnreachable
	ErrTimeout         = transport.ErrTimeout
	// ErrLocked: another apply holds the node's lock.
	ErrLocked = errors.New("node is locked by another apply")
	// ErrVerify: a staged file's SHA-256 on the node is not the bundle's.
	ErrVerify = errors.New("staged file does not match the bundle")
	// ErrAborted: the apply stopped because another node failed; this node
	// was left unchanged.
	ErrAborted = errors.New("apply aborted, node left unchanged")
	// ErrUnsafeDir: a target directory, the node state directory or a
	// directory on the way to one can be changed by a user other than root
	// (its owner, or group or others with write access), who could swap a
	// staging directory for a symbolic link while root writes through it.
	// Nothing was written on the node.
	ErrUnsafeDir = errors.New("a directory mtlsctl writes in as root is not safe from other users")
	// ErrMoved: a node no longer holds what the plan saw; nothing was
	// changed anywhere. Plan again.
	ErrMoved = errors.New("node changed since the plan")
	// ErrStalePlan: the saved plan was made for other bundles (the state
	// or the cluster file changed since); nothing was changed.
	ErrStalePlan = errors.New("the saved plan does not match the current bundles")
)

// NodeError is the program's one per-node error type (inventory.NodeError).
type NodeError = transport.NodeError

func nodeErr(node, step string, err error) error { return transport.WrapNode(node, step, err) }
