package cmd

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mtlsctl/mtlsctl/internal/app"
)

func inventoryCommand() *cli.Command {
	return &cli.Command{
		Name:  "inventory",
		Usage: "check the cluster file, or make one from an Apigee silent config",
		Subcommands: []*cli.Command{
			{
				Name:  "validate",
				Usage: "check the cluster file and print the topology",
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					return app.Validate(common(c))
				},
			},
			{
				Name:      "import-apigee",
				Usage:     "turn Apigee silent config file(s) (one per region) into a cluster file",
				ArgsUsage: "SILENT_CONFIG [SILENT_CONFIG...]",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "out", Usage: "write the cluster file to `FILE` (default: the --inventory path)"},
					&cli.StringFlag{Name: "name", Usage: "cluster name (default: from the first file's name)"},
					&cli.BoolFlag{Name: "force", Usage: "replace an existing cluster file"},
				},
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return app.Usagef("inventory import-apigee: give the silent config file(s) to import")
					}
					return app.ImportApigee(common(c), app.ImportOptions{
						Files: c.Args().Slice(),
						Out:   c.String("out"),
						Name:  c.String("name"),
						Force: c.Bool("force"),
					})
				},
			},
		},
	}
}

func generateCommand() *cli.Command {
	return &cli.Command{
		Name:  "generate",
		Usage: "create what is missing in the state dir: CA, gossip key, a certificate per node",
		Description: "Idempotent: an existing CA or gossip key is never replaced; a node's certificate is\n" +
			"reissued only when its name, address, datacenter or role changed, or it is close to expiry.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "ca-key-type", Value: "ecdsa-p256", Usage: "key type of a new CA: ecdsa-p256, rsa-2048 or rsa-4096"},
			&cli.StringFlag{Name: "key-type", Value: "ecdsa-p256", Usage: "key type of new node certificates: ecdsa-p256, rsa-2048 or rsa-4096"},
			&cli.IntFlag{Name: "ca-days", Value: 1825, Usage: "validity of a new CA, in days"},
			&cli.IntFlag{Name: "cert-days", Usage: "validity of new node certificates, in days (default: the cluster file's certs.days, else 365)"},
			&cli.IntFlag{Name: "renew-before", Value: 30, Usage: "reissue node certificates that expire within this many `DAYS`"},
			&cli.BoolFlag{Name: "name-constraints", Usage: "limit a new CA to the Consul domain and localhost (X.509 name constraints)"},
			&cli.BoolFlag{Name: "force-unlock", Usage: "clear a state lock left by a dead mtlsctl run (refused while it runs)"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			return app.Generate(common(c), app.GenerateOptions{
				CAKeyType:       c.String("ca-key-type"),
				KeyType:         c.String("key-type"),
				CADays:          c.Int("ca-days"),
				CertDays:        c.Int("cert-days"),
				RenewBefore:     time.Duration(c.Int("renew-before")) * 24 * time.Hour,
				NameConstraints: c.Bool("name-constraints"),
				ForceUnlock:     c.Bool("force-unlock"),
			})
		},
	}
}

func renderCommand() *cli.Command {
	return &cli.Command{
		Name:  "render",
		Usage: "write every node's bundle under DIR/<node>/<absolute path on the node>",
		Flags: []cli.Flag{
			// Checked in the action, not with Required: urfave's missing-flag
			// error has no type to tell it apart (usage, exit 3).
			&cli.StringFlag{Name: "out", Usage: "output `DIR` (created; must be empty or absent) (required)"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if c.String("out") == "" {
				return app.Usagef("render: --out DIR is required")
			}
			return app.Render(common(c), c.String("out"))
		},
	}
}

func portsCommand() *cli.Command {
	return &cli.Command{
		Name:  "ports",
		Usage: "print the proxy-port assignment per node",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "table", Usage: "table, json or apigee-report (the JSON shape of `apigee-mtls report`)"},
			&cli.StringFlag{Name: "catalog", Usage: "print a connection catalogue instead: `edge` (Edge for Private Cloud with mTLS, with this cluster's mesh paths) or hybrid (Apigee hybrid runtime plane)"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			format := c.String("format")
			if c.String("output") == "json" && !c.IsSet("format") {
				format = "json"
			}
			if c.IsSet("catalog") {
				name := c.String("catalog")
				if name != "edge" && name != "hybrid" {
					return app.Usagef("ports --catalog %q: use edge or hybrid", name)
				}
				if format != "table" && format != "json" {
					return app.Usagef("ports --catalog --format %q: a catalogue prints as table or json (apigee-report is the port report's format)", format)
				}
				return app.PortsCatalog(common(c), name, format)
			}
			switch format {
			case "table", "json", "apigee-report":
			default:
				return app.Usagef("ports --format %q: use table, json or apigee-report", format)
			}
			return app.Ports(common(c), format)
		},
	}
}

// sshFlags are the flags of every command that reaches the nodes.
func sshFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "concurrency", Value: 20, Usage: "nodes worked on at once"},
		&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "deadline for each SSH step on a node"},
		&cli.BoolFlag{Name: "accept-new-host-keys", Usage: "trust hosts missing from known_hosts and record them (a changed key is always refused)"},
		&cli.StringSliceFlag{Name: "nodes", Usage: "limit to these node `NAMES` (comma-separated)"},
		&cli.BoolFlag{Name: "skip-live", Usage: "do not query the Consul agents (no health wait after apply, no live section in status)"},
	}
}

func distOptions(c *cli.Context) app.DistOptions {
	return app.DistOptions{
		Concurrency:       c.Int("concurrency"),
		Timeout:           c.Duration("timeout"),
		AcceptNewHostKeys: c.Bool("accept-new-host-keys"),
		Nodes:             c.StringSlice("nodes"),
		SkipLive:          c.Bool("skip-live"),
	}
}

func planCommand() *cli.Command {
	return &cli.Command{
		Name:  "plan",
		Usage: "show, per node, which files would be created, changed or left alone (changes nothing)",
		Flags: append(sshFlags(),
			&cli.BoolFlag{Name: "detailed-exitcode", Usage: "exit 2 when changes are pending, 0 when none"},
			&cli.StringFlag{Name: "out", Usage: "save the plan to `FILE`; `mtlsctl apply FILE` then applies exactly it"},
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			return app.Plan(c.Context, common(c), distOptions(c), app.PlanOptions{
				DetailedExit: c.Bool("detailed-exitcode"),
				Out:          c.String("out"),
			})
		},
	}
}

func applyCommand() *cli.Command {
	return &cli.Command{
		Name:      "apply",
		Usage:     "push every node's bundle consistently: stage everywhere, verify, commit everywhere, reload, wait until healthy",
		ArgsUsage: "[PLAN-FILE]",
		Description: "Without PLAN-FILE, apply plans, shows the plan, asks, and applies exactly that plan.\n" +
			"With a file saved by `plan -out FILE`, it applies that plan without asking, and refuses\n" +
			"if the state, the cluster file or any node changed since.",
		Flags: append(sshFlags(),
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation"},
			forceUnlockFlag(),
			&cli.BoolFlag{Name: "skip-preflight", Usage: "do not check free ports and clock skew on the nodes before starting"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return app.Usagef("apply takes at most one argument, a saved plan file; got %d", c.NArg())
			}
			return app.Apply(c.Context, common(c), distOptions(c), app.ApplyOptions{
				Yes:           c.Bool("yes"),
				ForceUnlock:   forceUnlock(c),
				PlanFile:      c.Args().First(),
				SkipPreflight: c.Bool("skip-preflight"),
			})
		},
	}
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "per node: reachable, generation, CA and gossip fingerprints, cert expiry, drift; live Consul health",
		Flags: sshFlags(),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			return app.Status(c.Context, common(c), distOptions(c))
		},
	}
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:  "verify",
		Usage: "from every node, every allowed mesh path carries a connection and a sample of each denied one is refused",
		Flags: append(sshFlags(),
			&cli.DurationFlag{Name: "hold", Value: time.Second, Usage: "a connection still open after this long, with no answer, counts as carried (components that wait for the client)"},
			&cli.DurationFlag{Name: "connect-timeout", Value: 5 * time.Second, Usage: "deadline for each probe connection"},
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if c.Duration("hold") <= 0 || c.Duration("connect-timeout") <= 0 {
				return app.Usagef("--hold and --connect-timeout must be positive")
			}
			return app.Verify(c.Context, common(c), distOptions(c), app.VerifyOptions{Hold: c.Duration("hold"), Timeout: c.Duration("connect-timeout")})
		},
	}
}

func uninstallCommand() *cli.Command {
	return &cli.Command{
		Name:  "uninstall",
		Usage: "remove exactly what mtlsctl installed (proxy units, firewall chains and nat rules, its intentions, files and node state), after a plan",
		Flags: append(sshFlags(),
			&cli.BoolFlag{Name: "yes", Aliases: []string{"y"}, Usage: "do not ask for confirmation"},
			forceUnlockFlag(),
		),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			return app.Uninstall(c.Context, common(c), distOptions(c), app.UninstallOptions{Yes: c.Bool("yes"), ForceUnlock: forceUnlock(c)})
		},
	}
}

func certsCommand() *cli.Command {
	return &cli.Command{
		Name:  "certs",
		Usage: "certificate inspection",
		Subcommands: []*cli.Command{
			{
				Name:  "check-expiration",
				Usage: "expiry of the CA and every node certificate (from the state dir, or --remote from the nodes)",
				Flags: append(sshFlags(),
					&cli.BoolFlag{Name: "remote", Usage: "read the certificate each node actually holds"},
					&cli.IntFlag{Name: "warn-days", Value: 30, Usage: "exit non-zero when a certificate expires within `DAYS`"},
				),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					return app.CheckExpiration(c.Context, common(c), distOptions(c), app.ExpiryOptions{
						Remote:   c.Bool("remote"),
						WarnDays: c.Int("warn-days"),
					})
				},
			},
		},
	}
}

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "the whole bootstrap (generate, plan, apply, status) against a local sandbox cluster",
		Description: "Starts in-process SSH/SFTP servers on loopback, one per node, each with its own host key\n" +
			"and file root, and runs the real pipeline against them. Needs no root, no setup, no network.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "example", Value: "edge-5", Usage: "topology: edge-5, edge-9, edge-12 or edge-13"},
			&cli.StringFlag{Name: "dir", Usage: "keep the sandbox (state, node roots) in `DIR` instead of a temporary directory"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			return app.Demo(c.Context, common(c), app.DemoOptions{
				Example: c.String("example"),
				Dir:     c.String("dir"),
			})
		},
	}
}

func sandboxCommand() *cli.Command {
	dir := func() cli.Flag {
		return &cli.StringFlag{Name: "dir", Usage: "the sandbox `DIR`: its cluster file, keys, node files and state (required)"}
	}
	return &cli.Command{
		Name:  "sandbox",
		Usage: "sandbox nodes that stay up between commands, with a cluster file to try everything on",
		Description: "`sandbox up` starts one local SSH/SFTP server per node in a background process and writes\n" +
			"DIR/cluster.yaml; run any command with `-i DIR/cluster.yaml --state DIR/state`. The nodes hold\n" +
			"files but run no Consul agent, proxy or firewall: their consul and systemctl only record calls.",
		Subcommands: []*cli.Command{
			{
				Name:  "up",
				Usage: "start the sandbox nodes in the background (idempotent)",
				Flags: []cli.Flag{
					dir(),
					&cli.StringFlag{Name: "example", Usage: "topology: edge-5, edge-9, edge-12 or edge-13 (default: the sandbox's own, else edge-5); -i FILE takes your cluster file instead"},
				},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					o := app.SandboxOptions{Dir: c.String("dir"), Example: c.String("example")}
					if c.IsSet("inventory") {
						o.ClusterFile = c.String("inventory")
					}
					return app.SandboxUp(c.Context, common(c), o)
				},
			},
			{
				Name:  "down",
				Usage: "stop the sandbox nodes (their files and the state stay in DIR)",
				Flags: []cli.Flag{dir()},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					return app.SandboxDown(common(c), app.SandboxOptions{Dir: c.String("dir")})
				},
			},
			{
				Name:   "serve",
				Usage:  "serve the sandbox nodes until SIGTERM (started by `sandbox up`)",
				Hidden: true,
				Flags:  []cli.Flag{dir()},
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					return app.SandboxServe(c.Context, common(c), app.SandboxOptions{Dir: c.String("dir")})
				},
			},
		},
	}
}
