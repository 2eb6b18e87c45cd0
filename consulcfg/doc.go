// Package consulcfg owns what each node must hold: it renders, from pure data
// (a validated topology, the port assignment, the CA bundle, the node's leaf
// certificate and the gossip key), one Bundle per node: the Consul agent
// config for the node's Consul version, the service and sidecar definitions
// with the assigned proxy ports, the node's firewall rules and its part of the
// port report. It also renders the port report itself and can write bundles
// to a local tree (`mtlsctl render --out DIR`).
//
// It must not touch the network, the admin state directory or any node, and
// it never sees the CA private key. Rendering is deterministic: the same input
// gives the same bytes, so bundles can be diffed and golden-tested. It
// must never import ca or distribute.
package consulcfg
