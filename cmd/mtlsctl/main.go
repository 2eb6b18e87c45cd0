// Command mtlsctl secures a cluster's internal traffic with Consul mTLS: it
// generates the CA, node certificates and gossip key on the admin machine,
// renders every node's Consul configuration and pushes it over SSH.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/mtlsctl/mtlsctl/cmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cmd.Main(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
