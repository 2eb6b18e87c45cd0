// Package ca owns mtlsctl's admin-side state directory and every secret in
// it: the Consul agent CA (created once, loaded, imported, never silently
// replaced), the leaf certificate and key of every node (issued and renewed
// following Consul's `consul tls cert create` conventions), the gossip
// keyring (primary key plus previous keys), the recorded proxy-port
// assignment, expiry inspection and the lock that keeps two admins apart.
//
// It must not touch the network or the nodes, render any Consul
// configuration, or print a secret: errors and reports carry fingerprints
// (see [CA.Fingerprint], [CertFingerprint] and [GossipFingerprint]), never a
// private key or a gossip key. Errors say what is wrong and where (the file,
// the fingerprint) and match a sentinel or typed error (ErrNoCA,
// ErrStaleLock, *PermissionError, ...); the command line, which knows the
// commands and flags, adds what to do next. Recovery steps that only make
// sense for one damaged file (restore it from a backup, remove it) stay in
// that error's text.
//
// # Layout
//
// The state directory (mode 0700) holds:
//
//	ca/consul-agent-ca.pem          the current CA certificate (Consul's file name)
//	ca/consul-agent-ca-key.pem      its private key (0600; never leaves the admin machine)
//	ca/archive/<date>-<serial>/     CAs replaced by a rollover (cert and key, kept for audit)
//	ca/trust/*.pem                  extra CA certificates still trusted during a rollover;
//	                                appended, sorted by file name, to the CA bundle
//	gossip.json                     the gossip keyring: primary key and previous keys (0600)
//	nodes/<node>/cert.pem           the node's leaf certificate
//	nodes/<node>/key.pem            its private key (0600)
//	nodes/<node>/spec.json          what the leaf was issued for: node, datacenter, domain,
//	                                role, addresses, CA and certificate fingerprints
//	ports.json                      the proxy-port assignment (inventory.Assignment)
//	lock                            the state lock: flock(2) plus the holder's pid, host,
//	                                user, operation and start time (0600)
//	apply/                          the apply journal ([State.JournalDir]; its files are
//	                                the journal writer's)
//	rotation-gossip.json            a gossip or CA rotation's progress, while one is
//	rotation-ca.json                unfinished ([State.WriteRotation]; 0600)
//
// Other packages never build paths in it themselves: they ask State.
//
// Directories are 0700, private keys and secrets 0600, certificates and other
// public files 0644. [Open] refuses a state directory, or a key file, that
// group or others can access ([ErrLoosePermissions]).
//
// # Writes
//
// Every write is atomic: a temporary file in the same directory is written,
// flushed to disk, given its mode and renamed over the target, and the
// directory is then flushed so the rename survives a crash (the program's
// one helper for this, internal/atomicfile; many files at once share one
// flush). [State.Generate] does all its work in memory first
// and writes only once everything succeeded, in an order (CA, gossip key,
// leaves, ports) that lets a re-run converge after an interruption.
//
// Nothing here takes the lock implicitly: commands that change the state
// take [State.Lock] first.
package ca
