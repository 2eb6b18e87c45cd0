package cmd

import (
	"errors"
	"io"
	"strings"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/internal/app"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// jsonOutput reports whether args ask for JSON output (-o json or
// --output json, before or after the command), read from the arguments
// themselves so that an error in parsing them is a JSON document too.
func jsonOutput(args []string) bool {
	for i, a := range args {
		switch {
		case a == "--":
			return false
		case a == "-o" || a == "--output" || a == "-output":
			if i+1 < len(args) && args[i+1] == "json" {
				return true
			}
		case a == "-o=json" || a == "--output=json" || a == "-output=json":
			return true
		}
	}
	return false
}

// errorItem is one entry of an error document: what is wrong and, when
// known, where (file, line, field) or on which node.
type errorItem struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Node    string `json:"node,omitempty"`
	Message string `json:"message"`
}

// errorDoc is the JSON document a failing command prints on stdout under
// -o json (docs/json.md, kind "error").
type errorDoc struct {
	ExitCode int         `json:"exit_code"`
	Usage    bool        `json:"usage_error"`
	Message  string      `json:"message"`
	Errors   []errorItem `json:"errors"`
	Hint     string      `json:"hint,omitempty"`
}

// writeErrorDoc prints err as one JSON document.
func writeErrorDoc(w io.Writer, err error, code int) {
	doc := errorDoc{ExitCode: code, Usage: code == exitUsage, Message: message(err), Errors: errorItems(err), Hint: hint(err)}
	w.Write(app.JSONDocument("error", doc))
}

// errorItems splits err into its parts: each problem of a cluster-file or
// silent-config validation with its file, line and field; each node's error
// with the node; otherwise the error's own text, one item per joined error.
func errorItems(err error) []errorItem {
	var (
		ve *inventory.ValidationError
		ne *ca.NodeError
		un *app.UnknownNodeError
	)
	switch {
	case errors.As(err, &ve):
		items := make([]errorItem, 0, len(ve.Problems))
		for _, p := range ve.Problems {
			items = append(items, errorItem{File: ve.File, Line: p.Line, Field: p.Field, Message: p.Msg})
		}
		if len(items) > 0 {
			return items
		}
	case errors.As(err, &un):
		return []errorItem{{File: un.Source, Field: "--nodes", Node: un.Node, Message: un.Error()}}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok && !errors.Is(err, app.ErrUsage) && !errors.Is(err, app.ErrReported) {
		var items []errorItem
		for _, e := range j.Unwrap() {
			if e != nil {
				items = append(items, errorItems(e)...)
			}
		}
		if len(items) > 0 {
			return items
		}
	}
	if errors.As(err, &ne) {
		return []errorItem{{Node: ne.Node, Message: ne.Err.Error()}}
	}
	return []errorItem{{Message: strings.TrimSpace(message(err))}}
}

// countingWriter tells whether a command wrote its own document.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
