package cmd

import (
	"io"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

var (
	flagLineRE     = regexp.MustCompile(`^   (--?[a-z][a-z0-9-]*)((?:\[=[A-Z]+\])?)(?: ([^ ,]+))?(?:, -[a-z0-9]+(?: [^ ]+)?)?(?:\s|$)`)
	placeholderRE  = regexp.MustCompile(`^[A-Z][A-Z_-]*$`)
	doubleDefaultR = regexp.MustCompile(`\(default: [^)]*\).*\(default: `)
)

// TestEveryCommandsHelp renders the help of every command and checks that
// it says what the program does: placeholders are words in capitals (not a
// phrase urfave took from backticks, not "value"), no default is given
// twice, a default given in words (DefaultText) stands for a zero value the
// command replaces, and the global flags are in every command's help.
func TestEveryCommandsHelp(t *testing.T) {
	var walk func(path []string, cmds []*cli.Command)
	check := func(path []string, flags []cli.Flag) {
		args := append(append([]string{}, path...), "--help")
		code, out, errOut := run(t, args...)
		if code != 0 {
			t.Errorf("%v: exit %d: %s", args, code, errOut)
			return
		}
		for _, line := range strings.Split(out, "\n") {
			if doubleDefaultR.MatchString(line) {
				t.Errorf("%v: default given twice: %s", args, line)
			}
			m := flagLineRE.FindStringSubmatch(line)
			if m == nil || m[3] == "" {
				continue
			}
			if !placeholderRE.MatchString(m[3]) {
				t.Errorf("%v: flag %s has placeholder %q: put a `WORD` in its usage", args, m[1], m[3])
			}
		}
		if len(path) > 0 {
			for _, g := range []string{"--help, -h", "--inventory FILE, -i FILE", "--state DIR", "--output FORMAT, -o FORMAT", "[$MTLSCTL_INVENTORY]", globalCategory} {
				if !strings.Contains(out, g) {
					t.Errorf("%v: help lacks the global flag text %q", args, g)
				}
			}
		}
		for _, f := range flags {
			df, ok := f.(cli.DocGenerationFlag)
			if !ok {
				continue
			}
			usage := df.GetUsage()
			if strings.Contains(usage, "(default") {
				t.Errorf("%v: --%s says its default in its usage; use Value or DefaultText: %q", args, f.Names()[0], usage)
			}
			if strings.Contains(usage, "``") {
				t.Errorf("%v: --%s has an empty placeholder", args, f.Names()[0])
			}
			var text string
			switch f := f.(type) {
			case *cli.StringFlag:
				if text = f.DefaultText; text != "" && f.Value != "" {
					t.Errorf("%v: --%s shows default %q but is %q when not given", args, f.Name, text, f.Value)
				}
			case *cli.IntFlag:
				if text = f.DefaultText; text != "" && f.Value != 0 {
					t.Errorf("%v: --%s shows default %q but is %d when not given", args, f.Name, text, f.Value)
				}
			case *cli.DurationFlag:
				if text = f.DefaultText; text != "" && f.Value != 0 {
					t.Errorf("%v: --%s shows default %q but is %s when not given", args, f.Name, text, f.Value)
				}
			}
			if text == "" {
				text = df.GetDefaultText()
			}
			if text != "" && text != `""` && text != "false" && !strings.Contains(out, "(default: "+text+")") {
				t.Errorf("%v: --%s: help lacks its default %q", args, f.Names()[0], text)
			}
		}
	}
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			if c.Name == "help" {
				continue
			}
			p := append(append([]string{}, path...), c.Name)
			check(p, c.Flags)
			walk(p, c.Subcommands)
		}
	}
	a := NewApp(strings.NewReader(""), io.Discard, io.Discard)
	check(nil, a.Flags)
	walk(nil, a.Commands)
}
