package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every *ValidationError.
var ErrInvalid = errors.New("invalid cluster file")

// ErrPortsExhausted is wrapped by AssignPorts when a component's range has too
// few free ports left.
var ErrPortsExhausted = errors.New("port range exhausted")

// Problem is one thing wrong with an input file.
type Problem struct {
	Line  int    // 1-based line in the file, 0 when unknown
	Field string // e.g. datacenters[0].nodes[2].components[1], or a silent-config key
	Msg   string // what is wrong and what to do
}

// String formats the problem as "line: field: message" (without the file).
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "%d: ", p.Line)
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError lists every problem found in one file (a cluster file or an
// Apigee silent config). Error prints one problem per line as
// "file:line: field: message".
type ValidationError struct {
	File     string
	Problems []Problem
}

// Error lists the problems, one per line, each prefixed with the file name.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		s := p.String()
		if e.File != "" {
			sep := ":"
			if p.Line == 0 {
				sep = ": "
			}
			s = e.File + sep + s
		}
		lines[i] = s
	}
	if len(lines) == 0 {
		return e.File + ": invalid"
	}
	return strings.Join(lines, "\n")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// problems collects Problems and resolves field paths to lines.
type problems struct {
	file  string
	list  []Problem
	warns []Problem      // not errors: the file is usable as it is
	lines map[string]int // field path → line; "" is the document
}

// warn records a warning about field: something valid but probably not
// meant (see Topology.Warnings).
func (p *problems) warn(field, format string, args ...any) {
	p.warns = append(p.warns, Problem{Line: p.line(field), Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Warning is a Problem that does not stop the cluster file from being used,
// with the file it is in. String formats it as "file:line: field: message".
type Warning struct {
	File string `json:"file,omitempty"`
	Problem
}

func (w Warning) String() string {
	if w.File == "" {
		return w.Problem.String()
	}
	if w.Line == 0 {
		return w.File + ": " + w.Problem.String()
	}
	return w.File + ":" + w.Problem.String()
}

// MarshalJSON writes a warning as {file, line, field, message, text}.
func (w Warning) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		File    string `json:"file,omitempty"`
		Line    int    `json:"line,omitempty"`
		Field   string `json:"field,omitempty"`
		Message string `json:"message"`
	}{w.File, w.Line, w.Field, w.Msg})
}

func newProblems(file string) *problems {
	return &problems{file: file, lines: map[string]int{}}
}

// line returns the line of field, or of its closest parent that has one.
func (p *problems) line(field string) int {
	for {
		if l, ok := p.lines[field]; ok {
			return l
		}
		if field == "" {
			return 0
		}
		i := strings.LastIndexAny(field, ".[")
		if i < 0 {
			field = ""
		} else {
			field = field[:i]
		}
	}
}

func (p *problems) add(field, format string, args ...any) {
	p.addLine(p.line(field), field, format, args...)
}

func (p *problems) addLine(line int, field, format string, args ...any) {
	p.list = append(p.list, Problem{Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// err returns nil or a *ValidationError with the problems sorted by line
// (problems without a line last), keeping the order of those on one line.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	list := append([]Problem(nil), p.list...)
	sort.SliceStable(list, func(i, j int) bool {
		li, lj := list[i].Line, list[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
	return &ValidationError{File: p.file, Problems: list}
}

// NodeError is the one error type about one node of the cluster, whatever
// the package that met it: ca (its credentials), consulcfg (its bundle),
// distribute (a step on the node). Op names the step ("connect", "stage",
// "credentials", ...) and may be empty. Combine several with errors.Join;
// callers find them with errors.As.
type NodeError struct {
	Node string // node name from the cluster file
	Op   string
	Err  error
}

func (e *NodeError) Error() string {
	if e.Op == "" {
		return fmt.Sprintf("node %s: %v", e.Node, e.Err)
	}
	return fmt.Sprintf("node %s: %s: %v", e.Node, e.Op, e.Err)
}

// Unwrap returns the cause.
func (e *NodeError) Unwrap() error { return e.Err }

// WrapNode returns err as a *NodeError for node and op, or nil for nil. An
// error that already is a *NodeError for the same node is returned as it is,
// so that wrapping twice does not repeat the node's name.
func WrapNode(node, op string, err error) error {
	if err == nil {
		return nil
	}
	var ne *NodeError
	if errors.As(err, &ne) && ne.Node == node {
		return err
	}
	return &NodeError{Node: node, Op: op, Err: err}
}
