package testnet

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ServiceDef is a unit the systemctl stand-in manages inside each node.
type ServiceDef struct {
	// Command is the argv run in the node (Command[0] absolute or on PATH).
	Command []string
	// Env holds extra KEY=VALUE pairs for the command.
	Env []string
	// StopTimeout bounds "systemctl stop" before SIGKILL; zero means 10s.
	StopTimeout time.Duration
}

func (d ServiceDef) validate(name string) error {
	if !serviceRE.MatchString(name) || strings.HasSuffix(name, ".service") {
		return fmt.Errorf("service name %q must match %s without the .service suffix", name, serviceRE)
	}
	if len(d.Command) == 0 || d.Command[0] == "" {
		return fmt.Errorf("service %q: Command is empty; give the argv to run", name)
	}
	for _, kv := range d.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("service %q: Env entry %q must be KEY=VALUE", name, kv)
		}
	}
	return nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

// writeService writes the run script and stop timeout of one unit under
// svcRoot/<name>/. The run script records its own PID before exec'ing the
// command, so the PID file always names the service process itself.
func writeService(svcRoot, name string, d ServiceDef) error {
	if err := d.validate(name); err != nil {
		return err
	}
	dir := filepath.Join(svcRoot, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/sh\n# service %s, written by internal/testinfra/testnet\n", name)
	fmt.Fprintf(&b, "echo $$ > %s\n", shellQuote(filepath.Join(dir, "pid")))
	for _, kv := range d.Env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(v))
	}
	fmt.Fprintf(&b, "exec %s\n", shellJoin(d.Command))
	stop := d.StopTimeout
	if stop <= 0 {
		stop = 10 * time.Second
	}
	ticks := fmt.Sprintf("%d\n", max(int(stop/(100*time.Millisecond)), 1))
	if err := writeFileAtomic(filepath.Join(dir, "stop_ticks"), []byte(ticks), 0o644); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, "run"), []byte(b.String()), 0o755)
}

func writeFileAtomic(name string, data []byte, mode os.FileMode) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}

// systemctlScript returns the stand-in for one node. It is POSIX sh (dash)
// and only knows the units under svcRoot. Services are started with
// "setsid -f" rather than nohup: nohup would leave SIGHUP ignored, and a
// shell cannot trap a signal that was ignored when it started, so reload
// would silently do nothing.
func systemctlScript(node, svcRoot string) string {
	return strings.ReplaceAll(strings.ReplaceAll(systemctlTemplate, "@NODE@", node), "@SVCROOT@", shellQuote(svcRoot))
}

const systemctlTemplate = `#!/bin/sh
# systemctl stand-in for testnet node @NODE@, written by internal/testinfra/testnet.
# It is not systemd: it manages only the units defined under the directory
# below (run = the command, pid = its PID, log = its output).
svcroot=@SVCROOT@

usage() {
	echo "usage: systemctl start|stop|restart|try-restart|reload|reload-or-restart|status|is-active|is-enabled|enable|disable|daemon-reload UNIT" >&2
	exit 2
}

verb=
unit=
quiet=
for a in "$@"; do
	case $a in
	-q|--quiet) quiet=1 ;;
	-*) ;;
	*)
		if [ -z "$verb" ]; then verb=$a
		elif [ -z "$unit" ]; then unit=$a
		fi ;;
	esac
done
[ -n "$verb" ] || usage
case $verb in
daemon-reload) exit 0 ;;
esac
[ -n "$unit" ] || usage
unit=${unit%.service}
dir=$svcroot/$unit
if [ ! -f "$dir/run" ]; then
	echo "Unit $unit.service could not be found." >&2
	exit 5
fi
pidfile=$dir/pid
stopticks=$(cat "$dir/stop_ticks" 2>/dev/null || echo 100)

# running sets pid and succeeds when the unit's process is alive (a zombie
# does not count).
running() {
	[ -s "$pidfile" ] || return 1
	pid=$(cat "$pidfile")
	case $pid in ''|*[!0-9]*) return 1 ;; esac
	state=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$pid/stat" 2>/dev/null)
	case $state in ''|Z|X) return 1 ;; esac
	return 0
}

start() {
	running && return 0
	rm -f "$pidfile"
	setsid -f sh "$dir/run" </dev/null >>"$dir/log" 2>&1
	n=0
	while [ ! -s "$pidfile" ] && [ $n -lt 50 ]; do sleep 0.05; n=$((n+1)); done
	sleep 0.2
	if ! running; then
		echo "Job for $unit.service failed; last lines of $dir/log:" >&2
		tail -n 20 "$dir/log" >&2
		rm -f "$pidfile"
		return 1
	fi
}

stop() {
	if ! running; then
		rm -f "$pidfile"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null
	n=0
	while running; do
		if [ $n -ge "$stopticks" ]; then
			kill -KILL "$pid" 2>/dev/null
			sleep 0.1
			break
		fi
		sleep 0.1
		n=$((n+1))
	done
	rm -f "$pidfile"
}

reload() {
	if ! running; then
		echo "$unit.service is not active, cannot reload." >&2
		return 1
	fi
	kill -HUP "$pid"
}

case $verb in
start) start ;;
stop) stop ;;
restart) stop && start ;;
try-restart) if running; then stop && start; fi ;;
reload) reload ;;
reload-or-restart) if running; then reload; else start; fi ;;
status)
	if running; then
		echo "* $unit.service - $unit (testnet stand-in)"
		echo "     Active: active (running)"
		echo "   Main PID: $pid"
		exit 0
	fi
	echo "* $unit.service - $unit (testnet stand-in)"
	echo "     Active: inactive (dead)"
	exit 3 ;;
is-active)
	if running; then
		[ -n "$quiet" ] || echo active
		exit 0
	fi
	[ -n "$quiet" ] || echo inactive
	exit 3 ;;
is-enabled) [ -n "$quiet" ] || echo enabled ;;
enable|disable) ;;
*) usage ;;
esac
`
