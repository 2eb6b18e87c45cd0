// Package examples holds the example cluster files, one per Apigee mTLS
// topology (5, 9, 12 in two data centers, 13 nodes), embedded so that
// `mtlsctl demo` can run any of them without a checkout.
package examples

import "embed"

// FS holds the example cluster files, named <topology>.yaml.
//
//go:embed *.yaml
var FS embed.FS
