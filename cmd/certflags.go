package cmd

import (
	"github.com/urfave/cli/v2"

	"github.com/mtlsctl/mtlsctl/internal/app"
)

// The certificate flags of generate, rotate certs and rotate ca. A flag not
// typed passes its zero value ("" or 0): the command then uses the default
// the help names, and knows the flag was not given (generate says when a
// flag it was given could not act).

const keyTypes = "ecdsa-p256, ecdsa-p384, rsa-2048 or rsa-4096"

// caFlags configure a new CA.
func caFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "ca-key-type", DefaultText: "ecdsa-p256", Usage: "key `TYPE` of a new CA: " + keyTypes, Action: keyTypeAction("ca-key-type")},
		&cli.IntFlag{Name: "ca-days", DefaultText: "1825", Usage: "validity of a new CA, in `DAYS`", Action: positive[int]("ca-days", "a number of days")},
		&cli.BoolFlag{Name: "name-constraints", Usage: "limit a new CA to the Consul domain and localhost (X.509 name constraints)"},
	}
}

// leafFlags configure newly issued node certificates.
func leafFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "key-type", DefaultText: "ecdsa-p256", Usage: "key `TYPE` of newly issued node certificates: " + keyTypes, Action: keyTypeAction("key-type")},
		&cli.IntFlag{Name: "cert-days", DefaultText: "the cluster file's certs.days, else 365", Usage: "validity of newly issued node certificates, in `DAYS`", Action: positive[int]("cert-days", "a number of days")},
	}
}

func keyTypeAction(flag string) func(*cli.Context, string) error {
	return func(c *cli.Context, v string) error {
		if err := app.CheckKeyType(flag, v); err != nil {
			return &commandUsage{cmd: commandName(c), err: err}
		}
		return nil
	}
}
