package cmd

import (
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mtlsctl/mtlsctl/internal/app"
	"github.com/mtlsctl/mtlsctl/inventory"
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
					&cli.StringFlag{Name: "out", DefaultText: "the --inventory path", Usage: "write the cluster file to `FILE`"},
					&cli.StringFlag{Name: "name", DefaultText: inventory.DefaultImportCluster + " (a silent config names no cluster)", Usage: "cluster `NAME`"},
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
		Flags: append(append(caFlags(), leafFlags()...),
			&cli.IntFlag{Name: "renew-before", Value: 30, Usage: "reissue node certificates that expire within this many `DAYS`"},
			&cli.BoolFlag{Name: "force-unlock", Usage: "clear a state lock left by a dead mtlsctl run (refused while it runs)"},
		),
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
			&cli.StringFlag{Name: "format", DefaultText: "table, or json with -o json", Usage: "`FORMAT`: table, json or apigee-report (the JSON shape of apigee-mtls's report)"},
			&cli.StringFlag{Name: "catalog", Usage: "print a connection catalogue instead: `NAME` is edge (Edge for Private Cloud with mTLS, with this cluster's mesh paths) or hybrid (Apigee hybrid runtime plane)"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			format := c.String("format")
			switch {
			case !c.IsSet("format") && global(c, "output") == "json":
				format = "json"
			case !c.IsSet("format"):
				format = "table"
			case format == "table" && global(c, "output") == "json":
				return app.Usagef("ports: -o json and --format table contradict each other: drop one (-o json alone prints JSON)")
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
		&cli.IntFlag{Name: "concurrency", Value: 20, Usage: "`N` nodes worked on at once", Action: positive[int]("concurrency", "a number of nodes, e.g. 20")},
		&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "deadline (a `DURATION`, e.g. 30s) for each SSH step on a node", Action: positive[time.Duration]("timeout", "a duration, e.g. 30s or 2m")},
		&cli.BoolFlag{Name: "accept-new-host-keys", Usage: "trust hosts missing from known_hosts and record them (a changed key is always refused)"},
		&cli.StringSliceFlag{Name: "nodes", Usage: "limit to these node `NAMES` (comma-separated)"},
	}
}

// skipLiveFlag is --skip-live, offered only by the commands that ask the
// Consul agents something; usage says what it leaves out there.
func skipLiveFlag(usage string) cli.Flag {
	return &cli.BoolFlag{Name: "skip-live", Usage: "do not query the Consul agents: " + usage}
}

// positive is the Action of a numeric flag that must be above zero: a zero
// or negative value is a usage error naming the flag and what to give.
func positive[T int | time.Duration](flag, what string) func(*cli.Context, T) error {
	return func(c *cli.Context, v T) error {
		if v <= 0 {
			return &commandUsage{cmd: commandName(c), err: app.Usagef("--%s %v: give a positive value, %s", flag, v, what)}
		}
		return nil
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
			skipLiveFlag("the mesh intentions are not compared with the cluster's"),
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
			skipLiveFlag("no health wait after the commit, no intentions or ACL tokens written (nodes without a running agent)"),
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
		Flags: append(sshFlags(), skipLiveFlag("no live section (members, health, keyring)")),
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
			&cli.DurationFlag{Name: "hold", Value: time.Second, Usage: "a connection still open after this `DURATION`, with no answer, counts as carried (components that wait for the client)"},
			&cli.DurationFlag{Name: "connect-timeout", Value: 5 * time.Second, Usage: "deadline (a `DURATION`) for each probe connection"},
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
			skipLiveFlag("intentions and ACL tokens are left in Consul"),
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
				Description: "Lists the certificates the cluster file uses: the CA, a CA still trusted during a rollover,\n" +
					"and each node's certificate (a node removed from the cluster file is not listed). With --remote,\n" +
					"the certificate each node holds; a node that cannot be reached is listed as unreachable.\n" +
					"Each certificate that is not ok is named with the command that fixes it:\n" +
					"`mtlsctl rotate certs --nodes N` for a node's, `mtlsctl rotate ca` for the CA.\n\n" +
					"Exit codes: 0 every certificate ok; 4 a warning: a certificate expires within --warn-days;\n" +
					"1 a failure: a certificate expired, a node unreachable (--remote) or a certificate unreadable\n" +
					"or missing; 3 a usage error.",
				Flags: append(sshFlags(),
					&cli.BoolFlag{Name: "remote", Usage: "read the certificate each node actually holds"},
					&cli.IntFlag{Name: "warn-days", Value: 30, Usage: "warn (exit 4) when a certificate expires within `DAYS`", Action: func(c *cli.Context, v int) error {
						if v < 0 {
							return app.Usagef("--warn-days %d: give zero or more days", v)
						}
						return nil
					}},
				),
				Action: func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					if !c.Bool("remote") {
						for _, f := range sshFlags() {
							// --nodes also picks the rows of the local listing.
							if name := f.Names()[0]; name != "nodes" && c.IsSet(name) {
								return app.Usagef("certs check-expiration --%s: it applies to the connections to the nodes, with --remote only", name)
							}
						}
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
			&cli.StringFlag{Name: "example", Value: "edge-5", Usage: "`TOPOLOGY`: edge-5, edge-9, edge-12 or edge-13"},
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
					&cli.StringFlag{Name: "example", DefaultText: "the sandbox's own, else edge-5", Usage: "`TOPOLOGY`: edge-5, edge-9, edge-12 or edge-13; -i FILE takes your cluster file instead"},
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
