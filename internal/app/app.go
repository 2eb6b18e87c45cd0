// Package app runs mtlsctl's commands: each function takes the global
// settings and one options struct, strings the packages together (inventory →
// ca → consulcfg → distribute) and prints the result. It is what the command
// line calls, kept out of cmd so that tests reach every path. A command
// that reaches the nodes builds its topology, state, bundles and session
// (one SSH connection per node) once, and every phase shares them. It must
// never import cmd.
package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mtlsctl/mtlsctl/ca"
)

// Common holds the global flags and the streams of one command run.
type Common struct {
	Inventory   string // the cluster file
	State       string // the admin-side state directory
	JSON        bool   // -o json
	Stdin       io.Reader
	Stdout      io.Writer
	Stderr      io.Writer
	Interactive bool // stdin and stdout are a terminal
	// Now is the clock (nil = time.Now); tests set it.
	Now func() time.Time
}

func (c Common) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c Common) stdout() io.Writer {
	if c.Stdout == nil {
		return io.Discard
	}
	return c.Stdout
}

func (c Common) stderr() io.Writer {
	if c.Stderr == nil {
		return io.Discard
	}
	return c.Stderr
}

// printf writes a line of human output; with -o json it goes to stderr so
// stdout stays parseable.
func (c Common) printf(format string, a ...any) {
	w := c.stdout()
	if c.JSON {
		w = c.stderr()
	}
	fmt.Fprintf(w, format, a...)
}

// JSONSchemaVersion is the version of the JSON documents mtlsctl prints
// (docs/json.md): raised when a field changes meaning or goes away, not
// when one is added.
const JSONSchemaVersion = 1

// writeJSON prints v, a JSON object, as one document of the given kind:
// "schema_version" and "kind" come first, then v's own fields.
func (c Common) writeJSON(kind string, v any) error {
	_, err := c.stdout().Write(JSONDocument(kind, v))
	return err
}

// JSONDocument is v (which must marshal to a JSON object) with the
// document header: {"schema_version": 1, "kind": kind, ...v's fields}.
func JSONDocument(kind string, v any) []byte {
	body, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		body, _ = json.MarshalIndent(map[string]string{"error": "encoding the result: " + err.Error()}, "", "  ")
	}
	head := fmt.Sprintf("{\n  \"schema_version\": %d,\n  \"kind\": %q", JSONSchemaVersion, kind)
	rest := strings.TrimSpace(string(body))
	switch {
	case rest == "{}" || rest == "null":
		return []byte(head + "\n}\n")
	case strings.HasPrefix(rest, "{"):
		return []byte(head + ",\n" + strings.TrimPrefix(rest, "{\n") + "\n")
	}
	// Not an object: kept whole under "result".
	return []byte(head + ",\n  \"result\": " + strings.ReplaceAll(rest, "\n", "\n  ") + "\n}\n")
}

// ChangesPending is returned by Plan with --detailed-exitcode when a node has
// changes to apply; the command line turns it into exit code 2.
type ChangesPending struct{ Nodes int }

func (c ChangesPending) Error() string {
	return fmt.Sprintf("changes pending on %d node(s)", c.Nodes)
}

// ErrUsage marks an error in how mtlsctl was called: an unknown flag or
// command, a bad flag value, a missing argument, a node name the cluster
// file does not have. The command line exits 3 for it (see the README).
var ErrUsage = errors.New("usage error")

// usageError is an error that matches ErrUsage with errors.Is while its text
// stays the caller's own (no "usage error:" prefix).
type usageError struct{ err error }

func (e *usageError) Error() string   { return e.err.Error() }
func (e *usageError) Unwrap() []error { return []error{ErrUsage, e.err} }

// Usagef formats an error (%w allowed) that matches ErrUsage.
func Usagef(format string, a ...any) error {
	return &usageError{fmt.Errorf(format, a...)}
}

// UnknownNodeError is a node name, given with --nodes, that the cluster
// file does not have. It comes wrapped as a usage error.
type UnknownNodeError struct {
	Node   string
	Source string // the cluster file
}

func (e *UnknownNodeError) Error() string {
	return fmt.Sprintf("%q is not a node of %s", e.Node, e.Source)
}

// ErrReported marks a failure already reported in full (per node, above the
// summary): the command line exits 1 without printing it again.
var ErrReported = errors.New("failed (see the report above)")

// lockState takes the state directory's lock for op. With force, a lock
// left by a dead run is cleared first; ca refuses that while a live process
// holds it, so force never breaks a running mtlsctl.
func lockState(st *ca.State, op string, force bool) (*ca.Lock, error) {
	if force {
		if err := st.ForceUnlock(); err != nil {
			return nil, err
		}
	}
	return st.Lock(op)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
