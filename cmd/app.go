// Package cmd wires the command line (github.com/urfave/cli/v2) to the
// packages that do the work: each action reads its flags into an options
// struct and makes one call into internal/app. It holds no logic that the
// packages' own tests cannot reach, and it never exits the process: Main
// returns the exit code for main to use. Exit codes (usage 3, pending
// changes 2, other failures 1) and the one hint line are chosen here, from
// typed errors, with errors.Is/As. It must import nothing of mtlsctl but
// internal/app and the types its errors name.
package cmd

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mtlsctl/mtlsctl/internal/app"
)

// Version is set at build time with -ldflags "-X .../cmd.Version=...".
var Version = "dev"

// Main runs the command line with the given arguments and streams and returns
// the process exit code: 0 success, 1 failure, 2 for "changes pending" under
// plan --detailed-exitcode, 3 for usage errors. It prints a failure once, on
// stderr, followed by what to do next when that is known.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := NewApp(stdin, stdout, stderr).RunContext(ctx, args)
	code := exitCode(err)
	if code == exitOK || code == exitPending {
		// Changes pending is an answer, not a failure: the plan said it.
		return code
	}
	fmt.Fprintf(stderr, "mtlsctl: %v\n", err)
	if h := hint(err); h != "" {
		fmt.Fprintf(stderr, "hint: %s\n", h)
	}
	return code
}

// NewApp builds the command-line application on the given streams.
func NewApp(stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	a := &cli.App{
		Name:    "mtlsctl",
		Usage:   "secure a cluster's internal traffic with Consul mTLS, from one admin machine",
		Version: Version,
		Reader:  stdin,
		Writer:  stdout,
		// Errors are returned to Main, which prints them once and picks the exit code.
		ErrWriter:            stderr,
		ExitErrHandler:       func(*cli.Context, error) {},
		HideHelpCommand:      true,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "inventory", Aliases: []string{"i"}, Value: "cluster.yaml", EnvVars: []string{"MTLSCTL_INVENTORY"}, Usage: "the cluster `FILE`"},
			&cli.StringFlag{Name: "state", Value: "mtlsctl-state", EnvVars: []string{"MTLSCTL_STATE"}, Usage: "the admin-side state `DIR` (CA, keys, certificates; 0700)"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "output format: text or json"},
		},
		Before: func(c *cli.Context) error {
			switch c.String("output") {
			case "text", "json":
				return nil
			}
			return app.Usagef("--output %q: use text or json", c.String("output"))
		},
		OnUsageError: onUsageError,
		Action:       groupAction,
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
	wireUsage(a.Commands)
	return a
}

// common reads the global flags.
func common(c *cli.Context) app.Common {
	return app.Common{
		Inventory:   c.String("inventory"),
		State:       c.String("state"),
		JSON:        c.String("output") == "json",
		Stdin:       c.App.Reader,
		Stdout:      c.App.Writer,
		Stderr:      c.App.ErrWriter,
		Interactive: isTerminal(c.App.Reader) && isTerminal(c.App.Writer),
	}
}

func isTerminal(v any) bool {
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
