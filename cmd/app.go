// Package cmd wires the command line (github.com/urfave/cli/v2) to the
// packages that do the work: each action reads its flags into an options
// struct and makes one call into internal/app. It holds no logic that the
// packages' own tests cannot reach, and it never exits the process: Main
// returns the exit code for main to use.
package cmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/mtlsctl/mtlsctl/internal/app"
)

// Version is set at build time with -ldflags "-X .../cmd.Version=...".
var Version = "dev"

// Main runs the command line with the given arguments and streams and returns
// the process exit code: 0 success, 1 failure, 2 for "changes pending" under
// plan --detailed-exitcode, 3 for usage errors.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := NewApp(stdin, stdout, stderr).RunContext(ctx, args)
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(stderr, msg)
		}
		return ec.ExitCode()
	}
	var pending app.ChangesPending
	if errors.As(err, &pending) {
		return 2
	}
	fmt.Fprintf(stderr, "mtlsctl: %v\n", err)
	var usage usageError
	if errors.As(err, &usage) {
		return 3
	}
	return 1
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

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
			return usageError{fmt.Sprintf("--output %q: use text or json", c.String("output"))}
		},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error { return usageError{err.Error()} },
		Commands: []*cli.Command{
			inventoryCommand(),
			generateCommand(),
			renderCommand(),
			portsCommand(),
			planCommand(),
			applyCommand(),
			statusCommand(),
			certsCommand(),
			rotateCommand(),
			demoCommand(),
		},
	}
	setUsageErrors(a.Commands)
	return a
}

// setUsageErrors makes a flag error on any (sub)command a usage error (exit 3).
func setUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = func(_ *cli.Context, err error, _ bool) error { return usageError{err.Error()} }
		setUsageErrors(c.Subcommands)
	}
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
		return usageError{fmt.Sprintf("%s: unexpected argument %q", c.Command.FullName(), c.Args().First())}
	}
	return nil
}
