// Package transport is how mtlsctl reaches nodes: one SSH connection per
// node for a whole command (known_hosts checking with hashed entries and
// @cert-authority, ssh-agent and identity files, ~/.ssh/config with
// HostKeyAlias, ProxyJump chains and ProxyCommand, sudo; every hop under a
// deadline), and on it at most two sessions: one remote shell that runs every
// step of the command (Conn.Run) and one SFTP session for file transfers.
// Tunnels to the node's loopback ports (Conn.Dial) are channels, not
// sessions, and start no shell.
//
// The remote shell is a small POSIX sh driver (driver.sh) sent to `sh -s`
// on stdin. It reads each step's script from stdin and answers in a framed
// format: the step's stdout, then a line with a per-session random token,
// the step's name and exit code, then its stderr lines, then an end line.
// The remote user's login shell and dotfiles therefore run once per node
// and command, not once per step.
//
// Quote is the only shell-quoting function; every value that goes into a
// remote script passes through it.
//
// It knows nothing of bundles, Consul or the cluster's state: it must never
// import distribute, consulcfg or ca.
package transport
