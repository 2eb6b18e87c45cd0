package cmd

import (
	"github.com/urfave/cli/v2"

	"github.com/mtlsctl/mtlsctl/distribute"
	"github.com/mtlsctl/mtlsctl/internal/app"
)

func preflightCommand() *cli.Command {
	return &cli.Command{
		Name:  "preflight",
		Usage: "check the nodes before a bootstrap: OS, packages, consul binary, firewalld, free ports, clock skew, reachability, disk",
		Description: "Every node is checked over SSH, in parallel; each check is pass, warn or fail with the reason\n" +
			"and the fix. The exit status is non-zero when any check fails.",
		Flags: append(sshFlags(),
			&cli.StringFlag{Name: "apigee-version", Value: distribute.DefaultApigeeVersion,
				Usage: "the Apigee Edge `RELEASE` whose OS support table applies: 4.19.06, 4.50.00 or 4.51.00"},
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			v := c.String("apigee-version")
			known := false
			for _, k := range distribute.ApigeeVersions() {
				known = known || k == v
			}
			if !known {
				return app.Usagef("preflight --apigee-version %q: use one of 4.19.06, 4.50.00, 4.51.00", v)
			}
			return app.Preflight(c.Context, common(c), distOptions(c), app.PreflightOptions{ApigeeVersion: v})
		},
	}
}
