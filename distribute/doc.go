// Package distribute moves node bundles onto the nodes over SSH/SFTP and
// reports what the nodes hold: Plan (a diff, changing nothing), Apply (stage
// everywhere and verify, then, node by node with servers one at a time,
// commit with backups and reload) and Status (reachability, generation, fingerprints, expiry, drift).
//
// It owns the SSH transport (known_hosts checking, agent and identity files,
// ~/.ssh/config, bastion, sudo), the node-side state directory (generation,
// manifest, lock, backups) and the admin-side apply journal. It never decides
// what goes into a bundle (consulcfg does) and never prints a secret: keys
// are shown as "changed", certificates and gossip keys as fingerprints.
//
// Dial returns a live handle on the Consul cluster (Cluster): the Consul
// HTTP API of each node reached through its SSH connection to 127.0.0.1:8500
// (the port never listens beyond loopback), Health and WaitHealthy (leaders,
// Raft voters, LAN/WAN members, keyring by fingerprint, served
// certificates), and RollingRestart (servers one at a time, leader last,
// stopping before the next server when one does not come back).
//
// The remote side needs only SFTP and `sh -s`: every remote step is one small
// POSIX shell script sent on stdin, which prefixes every node path with
// "$MTLSCTL_ROOT" (empty on a real node; the sandbox's root in tests). Each
// session and each process a script starts costs the node CPU, so an apply
// keeps to one connection and, per node, four scripts (inspect, lock,
// verify with consul validate, commit with reload) and one SFTP session,
// and scripts batch their work into few processes.
package distribute
