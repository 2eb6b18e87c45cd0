// Package distribute moves node bundles onto the nodes and reports what the
// nodes hold: Plan (a diff, changing nothing, that can be saved and applied
// later), Apply (exactly the plan it is given: stage everywhere and verify,
// then commit with backups and reload, servers one at a time through
// consulapi.Roll), Recover (finish or roll back an interrupted apply from
// its journal) and Status (reachability, generation, fingerprints, expiry,
// drift). A Session holds one command's connections and is shared by all
// of these and by the live checks (Session.Live).
//
// It owns the node-side state directory (generation, manifest, lock,
// backups), the admin-side apply journal (in the directory the caller
// names, ca.State.JournalDir) and the node steps: POSIX sh files in
// scripts/, embedded and sent to the node's one remote shell with their
// variables quoted by transport.Quote. It never decides what goes into a
// bundle (consulcfg does), never takes the admin state lock (the caller
// holds it), and never prints a secret: keys are shown as "changed",
// certificates and gossip keys as fingerprints.
//
// Its subpackages are the transport (SSH, SFTP, the remote shell, tunnels)
// and consulapi (the Consul HTTP API through tunnels, health, rolling
// restarts). distribute must never import ca, internal/app or cmd.
package distribute
