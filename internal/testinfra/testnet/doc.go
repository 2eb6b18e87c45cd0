// Package testnet gives end-to-end tests several real hosts on one Linux
// machine: each node is a network namespace with its own private mount
// namespace, address and real OpenSSH sshd, all joined by a bridge that the
// test process (the admin) reaches directly.
//
// Layout for a Net with prefix P and the default subnet 198.18.0.0/24:
//
//	root namespace   P-h 198.18.0.1/24 ──veth──┐
//	namespace P-br   bridge br0  ◀─────────────┴── host, v1, v2, ...
//	namespace P-1    eth0 198.18.0.11/24 (peer of v1 in P-br), lo up, sshd
//	namespace P-2    eth0 198.18.0.12/24 ...
//
// The package owns those namespaces, the root-side veth, the processes it
// starts (tracked by PID), the per-node directories under the test's temp
// dir, the per-run host and client keys, and (only when asked for) the
// sudoers drop-in of the second login user. It never changes the host's
// default route, never reads or writes the real ~/.ssh, never kills a
// process by name, and removes everything it made in t.Cleanup. It does not
// know about Consul or mtlsctl: services are arbitrary commands.
//
// Everything here needs root, iproute2 (ip), OpenSSH's sshd and util-linux's
// unshare, nsenter and setsid; New skips the test when one is missing. The
// systemctl stand-in also runs unit files from each node's private unit dir
// (setpriv for User=), and Node.Listen / Node.DialTimeout open sockets inside
// a node from the test process. See README.md.
package testnet
