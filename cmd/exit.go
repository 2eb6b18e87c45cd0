package cmd

import (
	"errors"
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mtlsctl/mtlsctl/ca"
	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/internal/app"
	"github.com/mtlsctl/mtlsctl/inventory"
)

// Exit codes, as the README promises them.
const (
	exitOK      = 0
	exitFailure = 1
	exitPending = 2 // plan --detailed-exitcode: changes pending
	exitUsage   = 3
	exitWarning = 4 // certs check-expiration: a certificate expires within --warn-days
)

// exitCode maps the error a command returned to the process exit code. The
// packages below say what went wrong with typed or sentinel errors; only
// this layer turns them into numbers.
func exitCode(err error) int {
	var pending app.ChangesPending
	var warning app.ExpiryWarning
	var ec cli.ExitCoder
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &pending):
		return exitPending
	case errors.As(err, &warning):
		return exitWarning
	case errors.Is(err, app.ErrUsage):
		return exitUsage
	case errors.As(err, &ec):
		// urfave's own errors (e.g. `help` for an unknown topic, which it
		// makes exit 3 already).
		return ec.ExitCode()
	}
	return exitFailure
}

// hint says what to do next about err, or "" when the error says it all.
// Deep packages say what is wrong (the file, the node, the fingerprint);
// what to run next depends on the commands and flags, which only the command
// line knows, so it is added here, once, keyed by errors.Is/As.
func hint(err error) string {
	var (
		unknownNode *app.UnknownNodeError
		usage       *commandUsage
		perm        *ca.PermissionError
	)
	switch {
	case errors.As(err, &unknownNode):
		return fmt.Sprintf("`mtlsctl -i %s inventory validate` lists the cluster's nodes", unknownNode.Source)
	case errors.As(err, &usage):
		return fmt.Sprintf("see `%s --help`", usage.cmd)
	case errors.Is(err, app.ErrUsage):
		return "see `mtlsctl --help`"
	case errors.Is(err, inventory.ErrNoClusterFile):
		return "give the cluster file with -i FILE or MTLSCTL_INVENTORY (`mtlsctl sandbox up` or the files in examples/ give one to start from)"
	case errors.Is(err, ca.ErrNoState):
		return "run `mtlsctl generate` to create it, or point --state (or MTLSCTL_STATE) at the existing one"
	case errors.Is(err, ca.ErrNoCA):
		return "run `mtlsctl generate` to create the CA, or import one with `mtlsctl inventory import-apigee`"
	case errors.Is(err, ca.ErrNoGossipKey):
		return "run `mtlsctl generate` to create the gossip key, or import one with `mtlsctl inventory import-apigee`"
	case errors.Is(err, ca.ErrStale):
		return "run `mtlsctl generate` to issue the missing or outdated certificates"
	case errors.Is(err, ca.ErrCAExists):
		return "mtlsctl never replaces a CA: use `mtlsctl rotate ca` to roll over to a new one"
	case errors.Is(err, ca.ErrGossipExists):
		return "use `mtlsctl rotate gossip` to change the gossip key"
	case errors.Is(err, ca.ErrCAExpired):
		return "run `mtlsctl rotate ca` to roll over to a new CA"
	case errors.Is(err, ca.ErrStaleLock):
		return "make sure no mtlsctl is still working on this state, then run the command again with --force-unlock"
	case errors.Is(err, ca.ErrLocked):
		return "wait for that run to finish, then run the command again"
	case errors.As(err, &perm):
		return fmt.Sprintf("run `chmod %o %s`", perm.Want(), perm.Path)
	case errors.Is(err, distribute.ErrUnsafeDir):
		return "make each directory named above owned by root and not writable by group or others (the Consul agent only reads it), then run the command again"
	case errors.Is(err, distribute.ErrMoved), errors.Is(err, distribute.ErrStalePlan):
		return "review what changed with `mtlsctl plan`, then apply again (or save a new plan with `plan -out FILE`)"
	}
	return ""
}

// commandUsage is a usage error of one command, so that the hint can point
// at that command's --help.
type commandUsage struct {
	cmd string // "mtlsctl plan"
	err error
}

func (e *commandUsage) Error() string { return e.err.Error() }
func (e *commandUsage) Unwrap() error { return e.err }

// onUsageError makes urfave's flag-parse errors (unknown flag, bad value)
// usage errors of the command being parsed.
func onUsageError(c *cli.Context, err error, _ bool) error {
	return &commandUsage{cmd: commandName(c), err: app.Usagef("%w", err)}
}

// wireUsage sets onUsageError on every (sub)command and tags the usage
// errors their actions return with the command's name.
func wireUsage(cmds []*cli.Command) {
	for _, c := range cmds {
		c.OnUsageError = onUsageError
		if c.Action != nil {
			c.Action = wrapAction(c.Action)
		}
		wireUsage(c.Subcommands)
	}
}

// wrapAction checks --output before the action runs and tags the usage
// errors action returns with the command's name.
func wrapAction(action cli.ActionFunc) cli.ActionFunc {
	return func(ctx *cli.Context) error {
		err := checkOutput(ctx)
		if err == nil {
			err = action(ctx)
		}
		if errors.Is(err, app.ErrUsage) && !errors.As(err, new(*commandUsage)) {
			return &commandUsage{cmd: commandName(ctx), err: err}
		}
		return err
	}
}

// commandName is the full name of the command being run: "mtlsctl rotate
// certs". (urfave's FullName drops the parents of a subcommand.)
func commandName(c *cli.Context) string {
	var names []string
	for _, ctx := range c.Lineage() {
		if ctx.Command != nil && ctx.Command.Name != "" && ctx.Command.Name != c.App.Name {
			names = append([]string{ctx.Command.Name}, names...)
		}
	}
	return strings.Join(append([]string{c.App.Name}, names...), " ")
}

// groupAction is the action of the root and of commands that only group
// subcommands (inventory, certs, rotate): without arguments it shows the
// help; otherwise the first argument names no command, a usage error.
func groupAction(c *cli.Context) error {
	if c.NArg() == 0 {
		if c.Command == nil || c.Command.Name == "" || c.Command.Name == c.App.Name {
			return cli.ShowAppHelp(c)
		}
		return cli.ShowSubcommandHelp(c)
	}
	var names []string
	cmds := c.App.Commands
	if c.Command != nil && len(c.Command.Subcommands) > 0 {
		cmds = c.Command.Subcommands
	}
	for _, sub := range cmds {
		if !sub.Hidden && sub.Name != "help" {
			names = append(names, sub.Name)
		}
	}
	if s := closest(c.Args().First(), names); s != "" {
		return app.Usagef("unknown command %q: did you mean %q? (commands: %s)", c.Args().First(), s, strings.Join(names, ", "))
	}
	return app.Usagef("unknown command %q (commands: %s)", c.Args().First(), strings.Join(names, ", "))
}

// closest returns the name in names nearest to typed (a typo or a prefix),
// or "" when none is near enough to be a likely meaning.
func closest(typed string, names []string) string {
	best, bestDist := "", -1
	for _, n := range names {
		d := editDistance(typed, n)
		if strings.HasPrefix(n, typed) && typed != "" {
			d = min(d, 1)
		}
		if bestDist < 0 || d < bestDist {
			best, bestDist = n, d
		}
	}
	if bestDist < 0 || bestDist > max(2, len(typed)/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, counting a swap
// of two neighbouring letters as one edit.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
