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
// and knows two kinds of units: those defined under svcRoot (Options.Services
// and SetService, which win on a name clash) and unit files
// <unitDir>/<unit>.service, unitDir being a path as the node sees it. The
// state of both kinds lives under svcRoot/<unit>/. Services are started with
// "setsid -f" rather than nohup: nohup would leave SIGHUP ignored, and a
// shell cannot trap a signal that was ignored when it started, so reload
// would silently do nothing.
func systemctlScript(node, svcRoot, unitDir string) string {
	return strings.NewReplacer(
		"@NODE@", node,
		"@SVCROOT@", shellQuote(svcRoot),
		"@UNITDIR@", shellQuote(unitDir),
		"@UNITAWK@", unitAwk,
	).Replace(systemctlTemplate)
}

// unitAwk parses one unit file for the stand-in and prints "key value"
// lines: desc, install, type, user, group, rae, nnp, reload, workdir
// (shell-quoted), stop (seconds), env (shell-quoted words), exec (0 or 1 for
// a "-" prefix, then the shell-quoted argv; one line per ExecStart=) and
// error (a reason the stand-in refuses to start the unit). It must not
// contain a single quote: the script holds it in a single-quoted string.
const unitAwk = `
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
function shq(s,   r, i, c) {
	r = ""
	for (i = 1; i <= length(s); i++) {
		c = substr(s, i, 1)
		if (c == "\047") r = r "\047\\\047\047"; else r = r c
	}
	return "\047" r "\047"
}
function bool(v) { return (v ~ /^(1|yes|true|on)$/) ? "yes" : "no" }
function bad(msg) { errs[++nerr] = msg }
# words splits s like a systemd command line without expansion: blanks
# separate words, double or single quotes group, a backslash escapes the
# next character. It returns the count, or -1 for an unterminated quote.
function words(s, out,   n, i, c, w, inw, q) {
	n = 0; w = ""; inw = 0; q = ""
	for (i = 1; i <= length(s); i++) {
		c = substr(s, i, 1)
		if (q != "") {
			if (c == q) { q = ""; continue }
			if (q == "\"" && c == "\\" && i < length(s)) { i++; w = w substr(s, i, 1); continue }
			w = w c; continue
		}
		if (c == " " || c == "\t") { if (inw) { out[++n] = w; w = ""; inw = 0 } continue }
		inw = 1
		if (c == "\"" || c == "\047") { q = c; continue }
		if (c == "\\" && i < length(s)) { i++; w = w substr(s, i, 1); continue }
		w = w c
	}
	if (q != "") return -1
	if (inw) out[++n] = w
	return n
}
function execline(v,   ign, c, n, w, i, s) {
	ign = 0
	while (v ~ /^[-@:+!]/) {
		c = substr(v, 1, 1)
		if (c == "-") ign = 1; else bad("ExecStart= prefix " c " is not supported by the testnet stand-in")
		v = substr(v, 2)
	}
	if (v ~ /[$%]/) bad("ExecStart= uses $ or % expansion, which the testnet stand-in does not support: " v)
	split("", w)
	n = words(v, w)
	if (n < 0) { bad("ExecStart= has an unterminated quote: " v); return }
	if (n == 0) return
	if (substr(w[1], 1, 1) != "/") bad("ExecStart= must start with an absolute path in the testnet stand-in, not " w[1])
	s = ""
	for (i = 1; i <= n; i++) s = s " " shq(w[i])
	execs[++nexec] = ign s
}
function envline(v,   n, w, i) {
	if (v ~ /[$%]/) bad("Environment= uses $ or % expansion, which the testnet stand-in does not support: " v)
	split("", w)
	n = words(v, w)
	if (n < 0) { bad("Environment= has an unterminated quote: " v); return }
	for (i = 1; i <= n; i++) {
		if (w[i] ~ /^[A-Za-z_][A-Za-z0-9_]*=/) envs = envs " " shq(w[i])
		else bad("Environment= entry " w[i] " is not KEY=VALUE")
	}
}
function handle(line,   t, p, k, v) {
	t = trim(line)
	if (t == "" || t ~ /^[#;]/) return
	if (t ~ /^\[.*\]$/) { sect = t; return }
	p = index(t, "=")
	if (p == 0) return
	k = trim(substr(t, 1, p - 1)); v = trim(substr(t, p + 1))
	if (sect == "[Unit]") { if (k == "Description") desc = v; return }
	if (sect == "[Install]") {
		if (k ~ /^(WantedBy|RequiredBy|UpheldBy|Alias)$/ && v != "") install = 1
		return
	}
	if (sect != "[Service]") return
	if (k == "ExecStart") { if (v == "") nexec = 0; else execline(v) }
	else if (k == "Type") type = v
	else if (k == "User") user = v
	else if (k == "Group") group = v
	else if (k == "RemainAfterExit") rae = bool(v)
	else if (k == "NoNewPrivileges") nnp = bool(v)
	else if (k == "WorkingDirectory") workdir = v
	else if (k == "Environment") { if (v == "") envs = ""; else envline(v) }
	else if (k == "TimeoutStopSec") stop = v
	else if (k == "ExecReload") reload = (v != "")
	else if (k ~ /^(ExecStartPre|ExecStartPost|ExecCondition|ExecStop|ExecStopPost|EnvironmentFile|PIDFile|RootDirectory|DynamicUser)$/ && v != "") unsupported[k] = 1
}
BEGIN { sect = ""; pending = ""; nexec = 0; nerr = 0; type = "simple" }
{
	line = $0
	sub(/\r$/, "", line)
	if (pending != "") {
		if (trim(line) ~ /^[#;]/) next
		line = pending line
	}
	if (line ~ /\\$/) { pending = substr(line, 1, length(line) - 1) " "; next }
	pending = ""
	handle(line)
}
END {
	if (pending != "") handle(pending)
	if (desc != "") print "desc " desc
	if (install) print "install 1"
	if (type == "exec") type = "simple"
	if (type != "simple" && type != "oneshot") bad("Type=" type " is not supported by the testnet stand-in (simple, exec and oneshot are)")
	print "type " type
	if (user != "") { if (user ~ /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/) print "user " user; else bad("User=" user " is not a plain user name or ID") }
	if (group != "") { if (group ~ /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/) print "group " group; else bad("Group=" group " is not a plain group name or ID") }
	if (rae == "yes") print "rae yes"
	if (nnp == "yes") print "nnp yes"
	if (reload) print "reload 1"
	if (workdir != "") { if (workdir ~ /^\//) print "workdir " shq(workdir); else bad("WorkingDirectory=" workdir " must be an absolute path in the testnet stand-in") }
	if (stop ~ /^[0-9]+s?$/) { sub(/s$/, "", stop); print "stop " stop }
	if (envs != "") print "env" envs
	if (nexec == 0) bad("Service has no ExecStart= setting")
	if (type == "simple" && nexec > 1) bad("Service has more than one ExecStart= setting, which is only allowed for Type=oneshot services")
	for (i = 1; i <= nexec; i++) print "exec " execs[i]
	for (k in unsupported) bad(k "= is not supported by the testnet stand-in")
	for (i = 1; i <= nerr; i++) print "error " errs[i]
}
`

const systemctlTemplate = `#!/bin/sh
# systemctl stand-in for testnet node @NODE@, written by internal/testinfra/testnet.
# It is not systemd. It manages two kinds of units:
#  - units defined by the harness (Options.Services, SetService): the command
#    is $svcroot/UNIT/run;
#  - unit files $unitdir/UNIT.service (the node's private unit dir), read
#    again at every start; daemon-reload only counts its calls.
# The state of a unit lives in $svcroot/UNIT/: pid (of the running process),
# log (its output), enabled or disabled, active (a oneshot unit with
# RemainAfterExit=yes that succeeded), failed, stop_ticks, and exec (the
# script generated from the unit file).
svcroot=@SVCROOT@
unitdir=@UNITDIR@
# The PATH systemd gives services.
unitpath=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
set -f

[ -d "$svcroot" ] || mkdir -p "$svcroot" || exit 1
printf '%s\n' "$*" >>"$svcroot/.calls"

unitawk='@UNITAWK@'

usage() {
	echo "usage: systemctl [--quiet] [--now] start|stop|restart|try-restart|reload|reload-or-restart|status|is-active|is-failed|is-enabled|enable|disable|reset-failed UNIT... | daemon-reload" >&2
	exit 2
}

verb=
units=
quiet=
now=
skip=
for a in "$@"; do
	if [ -n "$skip" ]; then skip=; continue; fi
	case $a in
	-q|--quiet) quiet=1 ;;
	--now) now=1 ;;
	-t|-p|-n|-o|-s|-H|-M|--type|--property|--lines|--output|--signal|--host|--machine|--state) skip=1 ;;
	-*) ;;
	*)
		if [ -z "$verb" ]; then verb=$a; continue; fi
		case $a in
		*[!A-Za-z0-9_.@:-]*|.*)
			echo "Invalid unit name \"$a\" escaped as \"$a\"." >&2
			exit 1 ;;
		esac
		units="$units $a" ;;
	esac
done
[ -n "$verb" ] || usage
if [ "$verb" = daemon-reload ]; then
	date +%s.%N >>"$svcroot/.daemon-reloads"
	exit 0
fi
[ -n "$units" ] || usage

shq() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# resolve sets name, dir, pidfile, file and kind (svc, file or none) for a
# unit given as NAME or NAME.service.
resolve() {
	name=${1%.service}
	dir=$svcroot/$name
	pidfile=$dir/pid
	file=$unitdir/$name.service
	case $1 in
	*.target|*.socket|*.timer|*.mount|*.automount|*.path|*.slice|*.scope|*.device|*.swap)
		kind=none; dir=/nonexistent; pidfile=/nonexistent; return ;;
	esac
	if [ -f "$dir/run" ]; then kind=svc
	elif [ -f "$file" ]; then kind=file
	else kind=none
	fi
}

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

# activestate sets st to active, failed or inactive (and pid when running).
# A process that died on its own leaves its PID file behind: failed.
activestate() {
	if running || [ -f "$dir/active" ]; then st=active
	elif [ -f "$dir/failed" ] || [ -s "$pidfile" ]; then st=failed
	else st=inactive
	fi
}

# loadmeta parses the unit file into u_* variables.
loadmeta() {
	u_desc= u_install= u_type=simple u_user= u_group= u_rae= u_nnp= u_reload=
	u_workdir="'/'" u_stop=10 u_env= u_exec= u_err=
	meta=$(awk "$unitawk" "$file") || { u_err="cannot parse $file"; return; }
	while IFS= read -r line; do
		k=${line%% *}
		v=${line#* }
		case $k in
		desc) u_desc=$v ;;
		install) u_install=1 ;;
		type) u_type=$v ;;
		user) u_user=$v ;;
		group) u_group=$v ;;
		rae) u_rae=$v ;;
		nnp) u_nnp=$v ;;
		reload) u_reload=1 ;;
		workdir) u_workdir=$v ;;
		stop) u_stop=$v ;;
		env) u_env=$v ;;
		exec) u_exec="$u_exec$v
" ;;
		error) u_err="${u_err:+$u_err; }$v" ;;
		esac
	done <<EOF
$meta
EOF
}

# buildexec writes $dir/exec from the parsed unit file: a clean environment
# as systemd gives, User=/Group=/NoNewPrivileges= through setpriv, and the
# command(s).
buildexec() {
	if [ -n "$u_err" ]; then
		printf 'Failed to start %s.service: %s\n' "$name" "$u_err" >&2
		return 1
	fi
	envs="$(shq "PATH=$unitpath")"
	priv=
	if [ -n "$u_user" ] || [ -n "$u_group" ] || [ "$u_nnp" = yes ]; then
		priv=$(command -v setpriv) || {
			printf 'Failed to start %s.service: User=, Group= and NoNewPrivileges= need setpriv (util-linux)\n' "$name" >&2
			return 1
		}
		if [ -n "$u_user" ]; then
			pw=$(getent passwd "$u_user") || {
				printf 'Failed to start %s.service: User=%s: no such user\n' "$name" "$u_user" >&2
				return 1
			}
			uname=$(printf '%s' "$pw" | cut -d: -f1)
			ugid=$(printf '%s' "$pw" | cut -d: -f4)
			priv="$priv --reuid=$uname --regid=${u_group:-$ugid} --init-groups"
			envs="$envs $(shq "HOME=$(printf '%s' "$pw" | cut -d: -f6)") $(shq "USER=$uname") $(shq "LOGNAME=$uname") $(shq "SHELL=$(printf '%s' "$pw" | cut -d: -f7)")"
		elif [ -n "$u_group" ]; then
			priv="$priv --regid=$u_group --clear-groups"
		fi
		[ "$u_nnp" = yes ] && priv="$priv --no-new-privs"
		priv="$priv --"
	fi
	runner="/usr/bin/env -i $envs $u_env $priv"
	mkdir -p "$dir" || return 1
	{
		echo '#!/bin/sh'
		printf '# %s.service, generated by the testnet systemctl stand-in from %s\n' "$name" "$file"
		[ "$u_type" = oneshot ] || printf 'echo $$ > %s\n' "$(shq "$pidfile")"
		printf 'cd %s || exit 200\n' "$u_workdir"
		printf '%s' "$u_exec" | while IFS= read -r e; do
			ign=${e%% *}
			argv=${e#* }
			if [ "$u_type" != oneshot ]; then
				printf 'exec %s %s\n' "$runner" "$argv"
			elif [ "$ign" = 1 ]; then
				printf '%s %s || :\n' "$runner" "$argv"
			else
				printf '%s %s || exit $?\n' "$runner" "$argv"
			fi
		done
	} >"$dir/exec.tmp" && mv "$dir/exec.tmp" "$dir/exec" || return 1
	echo $((u_stop * 10)) >"$dir/stop_ticks"
}

# launch starts script $1 in its own session and waits until its PID file
# names a live process.
launch() {
	rm -f "$pidfile" "$dir/failed"
	setsid -f sh "$1" </dev/null >>"$dir/log" 2>&1
	n=0
	while [ ! -s "$pidfile" ] && [ $n -lt 250 ]; do sleep 0.01; n=$((n+1)); done
	sleep 0.2
	if ! running; then
		: >"$dir/failed"
		echo "Job for $name.service failed; last lines of $dir/log:" >&2
		tail -n 20 "$dir/log" >&2
		rm -f "$pidfile"
		return 1
	fi
}

notfound() {
	printf 'Failed to %s %s.service: Unit %s.service not found.\n' "$1" "$name" "$name" >&2
	return 5
}

start() {
	case $kind in
	none) notfound start; return ;;
	svc) running && return 0; launch "$dir/run"; return ;;
	esac
	loadmeta
	if [ "$u_type" = oneshot ]; then
		[ -f "$dir/active" ] && return 0
		buildexec || return 1
		rm -f "$dir/failed"
		if sh "$dir/exec" </dev/null >>"$dir/log" 2>&1; then
			[ "$u_rae" = yes ] && : >"$dir/active"
			return 0
		fi
		: >"$dir/failed"
		echo "Job for $name.service failed because the control process exited with error code; last lines of $dir/log:" >&2
		tail -n 20 "$dir/log" >&2
		return 1
	fi
	running && return 0
	buildexec || return 1
	launch "$dir/exec"
}

# stop works on the recorded state, so a unit whose file was deleted still
# stops.
stop() {
	if [ "$kind" = none ] && [ ! -d "$dir" ]; then
		printf 'Failed to stop %s.service: Unit %s.service not loaded.\n' "$name" "$name" >&2
		return 5
	fi
	rm -f "$dir/active" "$dir/failed"
	stopticks=$(cat "$dir/stop_ticks" 2>/dev/null || echo 100)
	if ! running; then
		rm -f "$pidfile"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null
	# Poll fast for the first 0.2 s (most services exit at once), then
	# every tick of 0.1 s.
	n=0
	f=0
	while running; do
		if [ $f -lt 10 ] && [ $n -lt "$stopticks" ]; then
			sleep 0.02
			f=$((f+1))
			[ $((f % 5)) -eq 0 ] && n=$((n+1))
			continue
		fi
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

restart() {
	if [ "$kind" = none ]; then notfound restart; return; fi
	stop && start
}

# canreload succeeds when reload means SIGHUP: always for harness units,
# with ExecReload= for unit files.
canreload() {
	[ "$kind" = svc ] && return 0
	[ "$kind" = file ] || return 1
	loadmeta
	[ -n "$u_reload" ]
}

reload() {
	if [ "$kind" = none ]; then notfound reload; return; fi
	if ! canreload; then
		echo "Failed to reload $name.service: Job type reload is not applicable for unit $name.service." >&2
		return 1
	fi
	if ! running; then
		echo "$name.service is not active, cannot reload." >&2
		return 1
	fi
	kill -HUP "$pid"
}

# enablement sets en to enabled, disabled, static or missing.
enablement() {
	case $kind in
	svc) if [ -f "$dir/disabled" ]; then en=disabled; else en=enabled; fi ;;
	file)
		if [ -f "$dir/enabled" ]; then en=enabled
		else
			loadmeta
			if [ -n "$u_install" ]; then en=disabled; else en=static; fi
		fi ;;
	*) if [ -f "$dir/enabled" ]; then en=enabled; else en=missing; fi ;;
	esac
}

enable() {
	case $kind in
	svc) rm -f "$dir/disabled"; return 0 ;;
	none)
		echo "Failed to enable unit: Unit file $name.service does not exist." >&2
		return 1 ;;
	esac
	loadmeta
	if [ -z "$u_install" ]; then
		echo "The unit files have no installation config (WantedBy=, RequiredBy=, UpheldBy=, Also=, or Alias= settings in the [Install] section). This means they are not meant to be enabled or disabled using systemctl." >&2
		return 0
	fi
	mkdir -p "$dir" && : >"$dir/enabled"
}

disable() {
	case $kind in
	svc) : >"$dir/disabled"; return 0 ;;
	none)
		if [ ! -d "$dir" ]; then
			echo "Failed to disable unit: Unit file $name.service does not exist." >&2
			return 1
		fi ;;
	esac
	rm -f "$dir/enabled"
}

status() {
	if [ "$kind" = none ] && [ ! -d "$dir" ]; then
		echo "Unit $name.service could not be found." >&2
		return 4
	fi
	enablement
	activestate
	desc=$name
	if [ "$kind" = file ]; then loadmeta; desc=${u_desc:-$name}; fi
	echo "* $name.service - $desc (testnet stand-in)"
	case $kind in
	svc) echo "     Loaded: loaded (testnet service; $en)" ;;
	file) echo "     Loaded: loaded ($file; $en)" ;;
	*) echo "     Loaded: not-found (Reason: Unit $name.service not found.)" ;;
	esac
	case $st in
	active)
		if running; then
			echo "     Active: active (running)"
			echo "   Main PID: $pid"
		else
			echo "     Active: active (exited)"
		fi ;;
	failed) echo "     Active: failed (Result: exit-code)" ;;
	*) echo "     Active: inactive (dead)" ;;
	esac
	[ "$st" = active ] && return 0
	return 3
}

say() { [ -n "$quiet" ] || echo "$1"; }

rc=0
case $verb in
is-active|is-failed|is-enabled)
	# Exit 0 when at least one unit is active (failed, enabled), as systemd.
	rc=1
	[ "$verb" = is-active ] && rc=3
	for u in $units; do
		resolve "$u"
		case $verb in
		is-active) activestate; say "$st"; [ "$st" = active ] && rc=0 ;;
		is-failed) activestate; say "$st"; [ "$st" = failed ] && rc=0 ;;
		is-enabled)
			enablement
			if [ "$en" = missing ]; then
				echo "Failed to get unit file state for $name.service: No such file or directory" >&2
			else
				say "$en"
				case $en in enabled|static) rc=0 ;; esac
			fi ;;
		esac
	done
	exit $rc ;;
status)
	first=1
	for u in $units; do
		[ -n "$first" ] || echo
		first=
		resolve "$u"
		status || { r=$?; [ $r -gt $rc ] && rc=$r; }
	done
	exit $rc ;;
start|stop|restart|try-restart|reload|reload-or-restart|enable|disable|reset-failed) ;;
*) usage ;;
esac

# Enable and disable act on all units before --now starts or stops them.
if [ "$verb" = enable ] || [ "$verb" = disable ]; then
	for u in $units; do
		resolve "$u"
		$verb || rc=$?
	done
	[ $rc -eq 0 ] && [ -n "$now" ] || exit $rc
	if [ "$verb" = enable ]; then verb=start; else verb=stop; fi
fi

for u in $units; do
	resolve "$u"
	case $verb in
	start) start || rc=$? ;;
	stop) stop || rc=$? ;;
	restart) restart || rc=$? ;;
	try-restart)
		activestate
		if [ "$st" = active ]; then restart || rc=$?; fi ;;
	reload) reload || rc=$? ;;
	reload-or-restart)
		if running && canreload; then kill -HUP "$pid"; else restart || rc=$?; fi ;;
	reset-failed)
		rm -f "$dir/failed"
		running || rm -f "$pidfile" ;;
	esac
done
exit $rc
`
