package cmd

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/mtlsctl/mtlsctl/distribute"
)

// unlockValue is --force-unlock's value. The flag takes an optional value,
// as a boolean flag does: `--force-unlock` alone, or `--force-unlock=RUN`
// (with "=": a bare word after the flag is an argument, not its value).
type unlockValue struct{ u distribute.Unlock }

// IsBoolFlag lets the flag stand alone (the flag package then sets "true").
func (v *unlockValue) IsBoolFlag() bool { return true }

func (v *unlockValue) String() string {
	switch {
	case v == nil:
		return ""
	case v.u.Run != "":
		return v.u.Run
	case v.u.Gone:
		return "true"
	}
	return ""
}

// Set takes "true" (the bare flag), "false", or a run id as the lock
// errors print it (hex digits).
func (v *unlockValue) Set(s string) error {
	switch strings.ToLower(s) {
	case "true":
		v.u = distribute.Unlock{Gone: true}
		return nil
	case "false":
		v.u = distribute.Unlock{}
		return nil
	}
	if s == "" || len(s) > 64 || strings.Trim(strings.ToLower(s), "0123456789abcdef") != "" {
		return fmt.Errorf("%q is not a run id: give the run id the lock error names (hex digits), or no value", s)
	}
	v.u = distribute.Unlock{Gone: true, Run: strings.ToLower(s)}
	return nil
}

// unlockFlag shows as `--force-unlock[=RUN]` in help: the value is optional.
type unlockFlag struct{ *cli.GenericFlag }

func (unlockFlag) TakesValue() bool { return false }

func (f unlockFlag) String() string { return "--" + f.Name + "[=RUN]\t" + f.Usage }

// forceUnlockFlag is the --force-unlock flag of the commands that change
// nodes.
func forceUnlockFlag() cli.Flag {
	return unlockFlag{&cli.GenericFlag{
		Name:  "force-unlock",
		Value: &unlockValue{},
		Usage: "take over a state lock left by a crashed run, and node locks whose run is over: " +
			"alone, those of runs of this machine that have exited; with =RUN, also run RUN's, from another admin machine " +
			"(check there first that it is not running). A run still going on this machine is never unlocked",
	}}
}

// forceUnlock reads --force-unlock.
func forceUnlock(c *cli.Context) distribute.Unlock {
	if v, ok := c.Generic("force-unlock").(*unlockValue); ok && v != nil {
		return v.u
	}
	return distribute.Unlock{}
}
