// Package consulapi is mtlsctl's live view of a Consul cluster: the HTTP API
// of each node's agent, reached through the node's SSH connection to
// 127.0.0.1:8500 (the port never listens beyond loopback), Health and
// WaitHealthy (leaders, Raft voters, LAN/WAN members, keyring by
// fingerprint, served certificates), the reload and restart commands,
// Roll, the one rolling engine (servers one at a time, leader last, each
// waited for) that rotations and apply both use, and the sync of the mesh's
// Connect intentions (PlanIntentions, ApplyIntentions, DeleteIntentions).
//
// It shares the command's connections (On) and never writes files on the
// nodes: it must not import distribute, consulcfg's renderers aside, or ca.
package consulapi
