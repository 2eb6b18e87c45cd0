package cmd

import (
	"github.com/urfave/cli/v2"

	"github.com/mtlsctl/mtlsctl/internal/app"
)

// The global flags (-i/--inventory, --state, -o/--output) are taken before
// the command and after it: `mtlsctl -i x.yaml plan` and `mtlsctl plan -i
// x.yaml` are the same. urfave/cli only parses a command's own flags after
// its name, so every (sub)command gets a copy of them, and global reads, for
// each, the innermost command where it was typed. Typed both before and
// after the command, the later (innermost) one wins, as later flags do.

// globalFlag describes one global flag.
type globalFlag struct {
	name    string
	aliases []string
	value   string // the default
	env     string // "" = none
	usage   string
}

var globals = []globalFlag{
	{name: "inventory", aliases: []string{"i"}, value: "cluster.yaml", env: "MTLSCTL_INVENTORY", usage: "the cluster `FILE`"},
	{name: "state", value: "mtlsctl-state", env: "MTLSCTL_STATE", usage: "the admin-side state `DIR` (CA, keys, certificates; 0700)"},
	{name: "output", aliases: []string{"o"}, value: "text", usage: "output `FORMAT`: text or json"},
}

// globalCategory is the heading of the global flags in a command's help.
const globalCategory = "GLOBAL (also before the command)"

// rootGlobalFlags are the global flags of the application itself: the
// environment variables are read here, once.
func rootGlobalFlags() []cli.Flag {
	var fs []cli.Flag
	for _, g := range globals {
		f := &cli.StringFlag{Name: g.name, Aliases: g.aliases, Value: g.value, Usage: g.usage}
		if g.env != "" {
			f.EnvVars = []string{g.env}
		}
		fs = append(fs, f)
	}
	return fs
}

// commandGlobalFlag is a command's copy of a global flag. It reads no
// environment variable (so that IsSet means "typed after this command"),
// but its help names the variable the root flag reads.
type commandGlobalFlag struct {
	*cli.StringFlag
	env string
}

func (f commandGlobalFlag) String() string {
	s := f.StringFlag.String()
	if f.env != "" {
		s += " [$" + f.env + "]"
	}
	return s
}

// addGlobalFlags gives every command in cmds, and their subcommands, a copy
// of the global flags.
func addGlobalFlags(cmds []*cli.Command) {
	for _, c := range cmds {
		// urfave adds --help only once it runs the command, after it
		// may have grouped the flags for the help: add it here.
		c.Flags = append(c.Flags, cli.HelpFlag)
		for _, g := range globals {
			if clash(c.Flags, g) {
				continue // the command's own flag of that name wins
			}
			c.Flags = append(c.Flags, commandGlobalFlag{
				StringFlag: &cli.StringFlag{Name: g.name, Aliases: g.aliases, Value: g.value, Usage: g.usage, Category: globalCategory},
				env:        g.env,
			})
		}
		addGlobalFlags(c.Subcommands)
	}
}

// global returns a global flag's value: from the innermost command where it
// was typed, else from the application's flag (typed before the command, or
// its environment variable), else the default.
func global(c *cli.Context, name string) string {
	for _, ctx := range c.Lineage() {
		if ctx.Command == nil || !defines(ctx.Command.Flags, name) {
			continue
		}
		if ctx.IsSet(name) {
			return ctx.String(name)
		}
	}
	for _, g := range globals {
		if g.name == name {
			return g.value
		}
	}
	return ""
}

// clash reports whether flags already has g's name or one of its aliases
// (the flag package refuses a name defined twice).
func clash(flags []cli.Flag, g globalFlag) bool {
	for _, n := range append([]string{g.name}, g.aliases...) {
		if defines(flags, n) {
			return true
		}
	}
	return false
}

func defines(flags []cli.Flag, name string) bool {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// checkOutput refuses an --output other than text or json.
func checkOutput(c *cli.Context) error {
	switch o := global(c, "output"); o {
	case "text", "json":
		return nil
	default:
		return app.Usagef("--output %q: use text or json", o)
	}
}
