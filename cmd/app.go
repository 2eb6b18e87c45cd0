// Package cmd wires the command line (github.com/urfave/cli/v2) to the
// packages that do the work: each action reads its flags into an options
// struct and makes one call into internal/app. It holds no logic that the
// packages' own tests cannot reach, and it never exits the process: Main
// returns the exit code for main to use. Exit codes (usage 3, pending
// changes 2, an expiry warning 4, other failures 1) and the one hint line
// are chosen here, from typed errors, with errors.Is/As. It must import nothing of mtlsctl but
// internal/app and the types its errors name.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mtlsctl/mtlsctl/internal/app"
)

// Version is set at build time with -ldflags "-X .../cmd.Version=..."; when
// it is not, --version reads the build information (see version).
var Version = ""

// Main runs the command line with the given arguments and streams and returns
// the process exit code: 0 success, 1 failure, 2 for "changes pending" under
// plan --detailed-exitcode, 3 for usage errors, 4 for a certificate that
// expires within --warn-days. It prints a failure once, on stderr, followed
// by what to do next when that is known (and, under -o json, as one JSON
// document on stdout unless the command printed its own); a failure the command already
// reported in full (app.ErrReported) gets one summary line, never its node
// errors again.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	asJSON := jsonOutput(args)
	var w io.Writer = stdout
	out := &countingWriter{w: stdout}
	if asJSON {
		w = out
	}
	err := NewApp(stdin, w, stderr).RunContext(ctx, args)
	code := exitCode(err)
	if code == exitOK || code == exitPending {
		// Changes pending is an answer, not a failure: the plan said it.
		return code
	}
	// Under -o json stdout holds one document: the command's own, which
	// carries its per-node errors, or else the error document.
	if asJSON && out.n == 0 {
		writeErrorDoc(stdout, err, code)
	}
	fmt.Fprintf(stderr, "mtlsctl: %s\n", message(err))
	if h := hint(err); h != "" {
		fmt.Fprintf(stderr, "hint: %s\n", h)
	}
	return code
}

// message is err's text for the one failure line: for an error already
// reported in full above, only its first line (the summary).
func message(err error) string {
	msg := err.Error()
	if errors.Is(err, app.ErrReported) {
		msg, _, _ = strings.Cut(msg, "\n")
	}
	return msg
}

// NewApp builds the command-line application on the given streams.
func NewApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	a := &cli.App{
		Name:    "mtlsctl",
		Usage:   "secure a cluster's internal traffic with Consul mTLS, from one admin machine",
		Version: version(),
		Reader:  stdin,
		Writer:  stdout,
		// Errors are returned to Main, which prints them once and picks the exit code.
		ErrWriter:            stderr,
		ExitErrHandler:       func(*cli.Context, error) {},
		Suggest:              true,
		EnableBashCompletion: true,
		Flags:                rootGlobalFlags(),
		OnUsageError:         onUsageError,
		Action:               groupAction,
		Commands: []*cli.Command{
			inventoryCommand(),
			generateCommand(),
			renderCommand(),
			portsCommand(),
			planCommand(),
			applyCommand(),
			statusCommand(),
			verifyCommand(),
			preflightCommand(),
			uninstallCommand(),
			certsCommand(),
			rotateCommand(),
			demoCommand(),
			sandboxCommand(),
		},
	}
	for _, c := range a.Commands {
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = groupAction
		}
	}
	addGlobalFlags(a.Commands)
	wireUsage(a.Commands)
	a.Action = wrapAction(a.Action)
	return a
}

// common reads the global flags (see global: before or after the command).
func common(c *cli.Context) app.Common {
	return app.Common{
		Inventory:   global(c, "inventory"),
		State:       global(c, "state"),
		JSON:        global(c, "output") == "json",
		Stdin:       c.App.Reader,
		Stdout:      c.App.Writer,
		Stderr:      c.App.ErrWriter,
		Interactive: isTerminal(c.App.Reader) && isTerminal(c.App.Writer),
	}
}

func isTerminal(v any) bool {
	if cw, ok := v.(*countingWriter); ok {
		v = cw.w
	}
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return app.Usagef("%s: unexpected argument %q", strings.TrimPrefix(commandName(c), c.App.Name+" "), c.Args().First())
	}
	return nil
}
