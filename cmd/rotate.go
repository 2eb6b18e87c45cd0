package cmd

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/mtlsctl/mtlsctl/internal/app"
)

// rotateCommand is `rotate gossip|certs|ca|tokens`: the zero-downtime rotations.
func rotateCommand() *cli.Command {
	yes := func() []cli.Flag {
		return []cli.Flag{
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation"},
			forceUnlockFlag(),
		}
	}
	sub := func(name, usage, desc string, extra []cli.Flag, run func(context.Context, app.Common, app.DistOptions, app.RotateOptions) error) *cli.Command {
		return &cli.Command{
			Name:        name,
			Usage:       usage,
			Description: desc,
			Flags:       append(append(sshFlags(), yes()...), extra...),
			Action: func(c *cli.Context) error {
				if err := noArgs(c); err != nil {
					return err
				}
				return run(c.Context, common(c), distOptions(c), app.RotateOptions{
					Yes:         c.Bool("yes"),
					ForceUnlock: forceUnlock(c),
					GossipWait:  c.Duration("wait"),

					KeyType:         c.String("key-type"),
					CertDays:        c.Int("cert-days"),
					CAKeyType:       c.String("ca-key-type"),
					CADays:          c.Int("ca-days"),
					NameConstraints: c.Bool("name-constraints"),
				})
			},
		}
	}
	return &cli.Command{
		Name:  "rotate",
		Usage: "zero-downtime rotations: the gossip key, node certificates, the CA, the ACL tokens",
		Subcommands: []*cli.Command{
			sub("gossip", "rotate the gossip encryption key through the keyring API",
				"Install the new key, wait until every member of every pool (LAN per datacenter, WAN) holds it,\n"+
					"make it primary, remove the old key, then write the new encrypt into every node's config.\n"+
					"A member that is down stops the rotation before the switch; re-running resumes.",
				[]cli.Flag{&cli.DurationFlag{Name: "wait", DefaultText: "scaled to the cluster size, at least 30s", Usage: "how long (a `DURATION`) to wait for every member to hold the new key"}},
				app.RotateGossip),
			sub("certs", "reissue node certificates from the same CA, reload, verify what each agent serves",
				"Without --nodes every node's certificate is reissued.",
				leafFlags(), app.RotateCerts),
			sub("ca", "roll over to a new CA: trust old+new, reissue leaves, drop the old CA (each phase verified)",
				"The old CA key stays archived in the state directory. Re-running resumes at the recorded phase.",
				append(caFlags(), leafFlags()...), app.RotateCA),
			sub("tokens", "replace every ACL token: agents', proxies' and the management token",
				"New tokens are made in Consul first, pushed (agents reload, each proxy restarts on its new token,\n"+
					"one proxy of a class at a time) and verified; only then are the old ones deleted. The new\n"+
					"management token is saved in the state directory before the old one is deleted.", nil, app.RotateTokens),
		},
	}
}
