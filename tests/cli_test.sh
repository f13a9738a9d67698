#!/usr/bin/env bash
# tests/cli_test.sh — drives the shval(1) binary through every command,
# good and bad input, exit codes, stderr messages, JSON output (through jq
# and python3 -m json.tool) and wait/watch against a writer process.
#
#   usage: tests/cli_test.sh PATH/TO/shval [local | redis DIR]
#
# Prints one line per check and a final "N passed, N failed"; exits
# non-zero on any failure.  Uses its own segments (named with $$) and
# removes them on exit.
#
# Segment kinds (ctest: cli_test and cli_test@redis): the value sections
# (create/get/set, bad values, add, show/info, rm, wait, watch, check,
# round trips, escapes, NUL bytes) run on $SEG, a local segment or, with
# "redis DIR", redis://127.0.0.1:PORT/P on a redis-server this script
# starts in DIR (inside the build tree) and stops.  Local-only sections
# (usage, segment sizes and modes, file: segments, ls of /dev/shm, dead
# processes and their locks, temporary segments, hostile files, read
# permission) run in the local run only; the Redis run adds what only
# Redis has (the unix-socket form, a wrong password, foreign keys).
set -u

BIN=${1:-}
KIND=${2:-local}
if [ -z "$BIN" ] || [ ! -x "$BIN" ] ||
	{ [ "$KIND" != local ] && { [ "$KIND" != redis ] || [ -z "${3:-}" ]; }; }; then
	echo "usage: $0 PATH/TO/shval [local | redis DIR]" >&2
	exit 2
fi
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
LIB=$(dirname "$BIN")/libshval.so # for the ctypes helpers, if present
is_local() { [ "$KIND" = local ]; }

RPID=
if is_local; then
	SEG=/shval_cli_test_$$
	SEG2=/shval_cli_test_$$_b
	NOSEG=/shval_cli_test_$$_none
else
	# a redis-server of our own (missing: a failure, make test installs it)
	RDIR=$3/cli.$$
	mkdir -p "$RDIR"
	if ! command -v redis-server >/dev/null; then
		echo "FAIL - redis-server is not installed (make deps installs Debian's redis-server)"
		exit 1
	fi
	PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	redis-server --port "$PORT" --bind 127.0.0.1 --unixsocket "$RDIR/sock" \
		--unixsocketperm 700 --dir "$RDIR" --logfile "$RDIR/log" --save '' \
		--appendonly no --daemonize no </dev/null &
	RPID=$!
	for i in $(seq 200); do
		[ -S "$RDIR/sock" ] && redis-cli -s "$RDIR/sock" ping >/dev/null 2>&1 && break
		sleep 0.05
	done
	SEG=redis://127.0.0.1:$PORT/clitest$$
	SEG2=redis://127.0.0.1:$PORT/clitest$$_b
	NOSEG=redis://127.0.0.1:$PORT/clitest$$_none
fi
TMPD=$(mktemp -d /tmp/shval_cli_test.XXXXXX)
FSEG=file:$TMPD/seg.shv
OUT=$TMPD/out
ERR=$TMPD/err
PASS=0
FAIL=0
BGPIDS=()

cleanup() {
	for p in "${BGPIDS[@]}"; do kill "$p" 2>/dev/null; done
	for s in "$SEG" "$SEG2" /shval_cli_test_$$_tmp /shval_cli_test_$$_ro "$FSEG" \
		/shval_cli_test_$$_dmg; do
		"$BIN" unlink --force "$s" >/dev/null 2>&1
	done
	rm -rf "$TMPD"
	if [ -n "$RPID" ]; then
		kill "$RPID" 2>/dev/null
		wait "$RPID" 2>/dev/null
		rm -rf "$RDIR"
	fi
}
trap cleanup EXIT

ok() { PASS=$((PASS + 1)); echo "ok   - $1"; }
bad() {
	FAIL=$((FAIL + 1))
	echo "FAIL - $1"
	shift
	for l in "$@"; do echo "       $l"; done
}

# run CMD...: stdout in $OUT, stderr in $ERR, status in $RC (with a guard
# against hangs).
run() {
	timeout 20 "$@" >"$OUT" 2>"$ERR"
	RC=$?
}

# t_ok DESC EXPECTED_STDOUT shval-args...: status 0, exact stdout, no stderr.
t_ok() {
	local desc=$1 want=$2
	shift 2
	run "$BIN" "$@"
	local got
	got=$(cat "$OUT")
	if [ "$RC" -eq 0 ] && [ "$got" = "$want" ] && [ ! -s "$ERR" ]; then
		ok "$desc"
	else
		bad "$desc" "args: $*" "status $RC (want 0)" "stdout: $got" \
			"want:   $want" "stderr: $(cat "$ERR")"
	fi
}

# t_fail DESC STATUS STDERR_SUBSTRING shval-args...: that status, empty
# stdout, stderr containing the substring; runtime errors (status 1, 3)
# start with "shval: CMD".
t_fail() {
	local desc=$1 want=$2 msg=$3
	shift 3
	run "$BIN" "$@"
	local e
	e=$(cat "$ERR")
	local good=1
	[ "$RC" -eq "$want" ] || good=0
	[ -s "$OUT" ] && good=0
	case "$e" in *"$msg"*) ;; *) good=0 ;; esac
	if [ "$want" -ne 2 ]; then
		case "$e" in "shval: $1"*) ;; *) good=0 ;; esac
	fi
	if [ $good -eq 1 ]; then
		ok "$desc"
	else
		bad "$desc" "args: $*" "status $RC (want $want)" \
			"stdout: $(cat "$OUT")" "stderr: $e" "want in stderr: $msg"
	fi
}

# t_json DESC JQ_FILTER shval-args...: status 0, stdout valid for jq and
# python3 -m json.tool, and `jq -e FILTER` true.
t_json() {
	local desc=$1 filter=$2
	shift 2
	run "$BIN" "$@"
	if [ "$RC" -ne 0 ]; then
		bad "$desc" "args: $*" "status $RC" "stderr: $(cat "$ERR")"
		return
	fi
	# (the second parser only in the local run: the JSON writer is the
	# same for both kinds, and a python3 start per check is costly)
	if is_local && ! python3 -m json.tool "$OUT" >/dev/null 2>"$TMPD/pyerr"; then
		bad "$desc" "python3 -m json.tool rejects: $(cat "$OUT")" \
			"$(cat "$TMPD/pyerr")"
		return
	fi
	if ! jq -e "$filter" "$OUT" >/dev/null 2>"$TMPD/jqerr"; then
		bad "$desc" "jq -e '$filter' false on: $(cat "$OUT")" \
			"$(cat "$TMPD/jqerr")"
		return
	fi
	ok "$desc"
}

# settle: before a writer changes what a waiter in another process waits
# for, let the waiter start and fall asleep (a Redis waiter shows as a
# client blocked in XREAD; locally 0.3 s).
settle() {
	if is_local; then
		sleep 0.3
		return
	fi
	for i in $(seq 200); do
		redis-cli -s "$RDIR/sock" client list 2>/dev/null | grep -q 'cmd=xread' && return
		sleep 0.05
	done
}

# check_true DESC COMMAND...: the command succeeds.
check_true() {
	local desc=$1
	shift
	if "$@"; then ok "$desc"; else bad "$desc" "command failed: $*"; fi
}

if command -v jq >/dev/null; then
	ok "jq is installed"
else
	bad "jq is installed (make deps installs it)"
	jq() { python3 -c 'import sys; sys.exit(2)'; } # every jq check fails
fi

"$BIN" unlink "$SEG" >/dev/null 2>&1
"$BIN" unlink "$SEG2" >/dev/null 2>&1

# ---- help and usage (local run only: no segment involved) ----------------

if is_local; then

run "$BIN"
[ "$RC" -eq 2 ] && grep -q "usage: shval COMMAND" "$ERR" &&
	ok "no arguments: usage on stderr, status 2" ||
	bad "no arguments: usage on stderr, status 2" "status $RC"
run "$BIN" help
[ "$RC" -eq 0 ] && grep -q "^  watch SEG" "$OUT" && grep -q "^  check SEG" "$OUT" &&
	ok "shval help lists the commands" || bad "shval help lists the commands"
run "$BIN" --help
[ "$RC" -eq 0 ] && grep -q "commands:" "$OUT" && ok "shval --help" ||
	bad "shval --help" "status $RC"
for c in ls new info show create get set add rm unlink wait watch check help version; do
	run "$BIN" "$c" --help
	if [ "$RC" -eq 0 ] && grep -q "^usage: shval $c" "$OUT"; then
		ok "shval $c --help"
	else
		bad "shval $c --help" "status $RC" "$(cat "$OUT" "$ERR")"
	fi
done
run "$BIN" help get
[ "$RC" -eq 0 ] && grep -q "^usage: shval get SEG NAME" "$OUT" &&
	ok "shval help get" || bad "shval help get"
t_fail "unknown command" 2 "unknown command 'frobnicate'" frobnicate
t_fail "help of an unknown command" 2 "unknown command 'nope'" help nope
t_fail "unknown option" 2 "unknown option '--bogus'" get "$SEG" x --bogus
t_fail "option not of this command" 2 "unknown option '--repair'" get "$SEG" x --repair
t_fail "flag given an argument" 2 "takes no argument" get "$SEG" x --json=1
t_fail "option missing its argument" 2 "needs an argument" wait "$SEG" x --timeout
t_fail "missing arguments" 2 "missing arguments" get "$SEG"
t_fail "too many arguments" 2 "too many arguments" get "$SEG" a b
t_fail "two modes for create" 2 "at most one" create "$SEG" x q --raw --atomic
t_fail "bad --size" 2 "bad size '12x'" new "$SEG" --size 12x
t_fail "bad --max" 2 "bad size" new "$SEG" --max -5
t_fail "bad --mode" 2 "bad mode '0999'" new "$SEG" --mode 0999
t_fail "bad --timeout" 2 "bad timeout" wait "$SEG" x --timeout soon
t_fail "negative --timeout" 2 "bad timeout" watch "$SEG" --timeout -1
t_fail "bad --count" 2 "bad count" watch "$SEG" --count 0
t_ok "version" "shval $("$BIN" version | cut -d' ' -f2)" version
fi

# ---- segments ---------------------------------------------------------------

t_fail "unknown segment" 1 "shval: get $SEG x: No such file or directory" get "$SEG" x
t_fail "bad segment name" 1 "invalid name" get noslash x
t_fail "info of an unknown segment" 1 "does not exist" info "$SEG"
t_ok "new" "" new "$SEG"
t_fail "new on an existing segment" 1 "already exists" new "$SEG"
if ! is_local; then
	t_ok "new" "" new "$SEG2"
	t_json "info --json of a new Redis segment" \
		'.segment == "'"$SEG2"'" and .values == 0 and .format_major >= 1' info "$SEG2" --json
else
t_ok "new with --size/--max/--mode suffixes" "" new "$SEG2" --size 128k --max 2m --mode 0640
check_true "new --mode sets the file mode" \
	test "$(stat -c %a /dev/shm/${SEG2#/})" = 640
t_json "info --json of the sized segment" \
	'.segment == "'"$SEG2"'" and .size == 131072 and .max_size == 2097152 and .mode == "0640" and .values == 0 and .format_major >= 1 and .attached == 0 and (.processes | length) == 0' \
	info "$SEG2" --json
run "$BIN" info "$SEG2"
[ "$RC" -eq 0 ] && grep -q "^max size: *2097152 (2M)" "$OUT" && grep -q "^segment: *$SEG2" "$OUT" &&
	ok "info text" || bad "info text" "$(cat "$OUT" "$ERR")"
t_ok "new file: segment" "" new "$FSEG" --max 1m
t_ok "create in a file: segment" "" create "$FSEG" n i 7
t_ok "get from a file: segment" "7" get "$FSEG" n
fi

# ---- create / get / set: each type ---------------------------------------

t_ok "create atomic q" "" create "$SEG" counter q --atomic 5
t_ok "get q" "5" get "$SEG" counter
t_ok "create d (default rlock)" "" create "$SEG" pi d 3.25
t_ok "get d" "3.25" get "$SEG" pi
t_ok "set d shortest round-trip" "" set "$SEG" pi 0.1
t_ok "get d 0.1" "0.1" get "$SEG" pi
t_ok "set d 1e300" "" set "$SEG" pi 1e300
t_ok "get d 1e+300" "1e+300" get "$SEG" pi
t_ok "create --lock f" "" create "$SEG" fl f --lock 0.1
t_ok "get f shortest as float" "0.1" get "$SEG" fl
t_ok "create --raw b" "" create "$SEG" small b --raw -128
t_ok "get b min" "-128" get "$SEG" small
t_ok "create B" "" create "$SEG" ub B 255
t_ok "create Q max" "" create "$SEG" big Q 18446744073709551615
t_ok "get Q max" "18446744073709551615" get "$SEG" big
t_ok "create c" "" create "$SEG" ch c A
t_ok "get c as its character" "A" get "$SEG" ch
t_ok "create ?" "" create "$SEG" flag '?' true
t_ok "get ?" "true" get "$SEG" flag
t_ok "create string" "" create "$SEG" s 16s hello
t_ok "get string" "hello" get "$SEG" s
t_ok "set string to empty" "" set "$SEG" s ""
t_ok "get empty string" "" get "$SEG" s
t_ok "set string with spaces and a newline" "" set "$SEG" s "a b
c"
t_ok "get string raw bytes" "a b
c" get "$SEG" s
t_json "get string --json escapes" '. == "a b\nc"' get "$SEG" s --json
t_ok "set string at full capacity" "" set "$SEG" s 0123456789abcdef
t_ok "set string beginning with --, after --" "" set "$SEG" s -- --dashes
t_ok "get string beginning with --" "--dashes" get "$SEG" s
t_ok "create array" "" create "$SEG" arr 3i 1 -2 3
t_ok "get array" "1 -2 3" get "$SEG" arr
t_ok "set array" "" set "$SEG" arr 4 5 6
t_json "array --json" '. == [4,5,6]' get "$SEG" arr --json
t_ok "create named struct" "" create "$SEG" pt "x:d y:d name:8s" x=1.5 name=start
t_ok "get struct" 'x=1.5 y=0 name="start"' get "$SEG" pt
t_ok "set one field, others unchanged" "" set "$SEG" pt y=-2
t_ok "get struct after set" 'x=1.5 y=-2 name="start"' get "$SEG" pt
t_json "struct --json" '. == {"x":1.5,"y":-2,"name":"start"}' get "$SEG" pt --json
t_ok "create unnamed struct" "" create "$SEG" tup "q d" 0=7 1=0.5
t_json "unnamed struct --json is an array" '. == [7,0.5]' get "$SEG" tup --json
t_ok "create with no value is zero" "" create "$SEG" zero h
t_ok "get zero" "0" get "$SEG" zero
t_ok "canonical type" "" create "$SEG" canon "x:d  y:d"
run "$BIN" show "$SEG" canon
grep -q "canon  *x:d y:d  " "$OUT" && ok "show prints the canonical type" ||
	bad "show prints the canonical type" "$(cat "$OUT")"

# ---- bad values -----------------------------------------------------------

t_fail "get unknown value" 1 "shval: get $SEG nope: no such value" get "$SEG" nope
t_fail "set unknown value" 1 "shval: set $SEG nope: no such value" set "$SEG" nope 1
t_fail "create existing value" 1 "already exists" create "$SEG" counter q
t_fail "create bad type" 1 "invalid type string" create "$SEG" t1 3z
t_fail "create bad value name" 1 "invalid name" create "$SEG" "has space" q
t_fail "create atomic string" 1 "not supported" create "$SEG" t2 8s --atomic
t_fail "create with out-of-range value" 1 "out of range" create "$SEG" t3 b 128
t_fail "failed create leaves no value" 1 "no such value" get "$SEG" t3
t_fail "malformed integer" 1 "shval: set $SEG counter: malformed text" set "$SEG" counter 12abc
t_fail "malformed float" 1 "malformed text" set "$SEG" pi 1.2.3
t_fail "empty number" 1 "malformed" set "$SEG" counter ""
t_fail "int8 out of range" 1 "out of range" set "$SEG" small 128
t_fail "uint8 negative" 1 "out of range" set "$SEG" ub -1
t_fail "int64 out of range" 1 "out of range" set "$SEG" counter 9223372036854775808
t_fail "uint64 out of range" 1 "out of range" set "$SEG" big 18446744073709551616
t_fail "float out of range" 1 "out of range" set "$SEG" fl 1e39
t_fail "too-long string" 1 "capacity" set "$SEG" s 0123456789abcdef0
t_fail "wrong number of array elements" 1 "index out of range" set "$SEG" arr 1 2
t_fail "malformed array element" 1 "malformed" set "$SEG" arr 1 x 3
t_fail "no such struct field" 1 "no such field" set "$SEG" pt z=1
t_fail "struct argument without =" 1 "" set "$SEG" pt 5
t_fail "bool malformed" 1 "malformed" set "$SEG" flag maybe
t_ok "values unchanged after errors" "5" get "$SEG" counter
t_ok "string unchanged after errors" "--dashes" get "$SEG" s
t_ok "array unchanged after errors" "4 5 6" get "$SEG" arr

# ---- add ------------------------------------------------------------------

t_ok "add atomic" "15" add "$SEG" counter 10
t_ok "add negative" "12" add "$SEG" counter -3
t_ok "add on a locked value" "3" add "$SEG" zero 3
t_ok "set d for add" "" set "$SEG" pi 0.1
t_ok "add float shortest" "0.30000000000000004" add "$SEG" pi 0.2
t_ok "add on f" "0.2" add "$SEG" fl 0.1
t_ok "add wraps modulo the width" "-127" add "$SEG" small 1
t_ok "add wraps B" "0" add "$SEG" ub 1
t_ok "add on Q prints unsigned" "18446744073709551615" add "$SEG" big 0
t_fail "add on a string" 1 "not supported" add "$SEG" s 1
t_fail "add on a bool" 1 "not supported" add "$SEG" flag 1
t_fail "add malformed delta" 1 "malformed delta" add "$SEG" counter 1x
t_fail "add float delta to an integer" 1 "malformed delta" add "$SEG" counter 1.5
t_fail "add malformed float delta" 1 "malformed delta" add "$SEG" pi abc
t_fail "add delta out of 64-bit range" 1 "malformed delta" add "$SEG" counter 99999999999999999999
t_fail "add unknown value" 1 "no such value" add "$SEG" nope 1

# ---- show / ls / info -----------------------------------------------------

run "$BIN" show "$SEG"
if [ "$RC" -eq 0 ] && head -1 "$OUT" | grep -q "^NAME  *TYPE  *MODE  *VERSION  *VALUE$" &&
	grep -q "^counter  *q  *atomic  *[0-9][0-9]*  *12$" "$OUT" &&
	grep -q '^pt  *x:d y:d name:8s  *rlock  *[0-9]*  *x=1.5 y=-2 name="start"$' "$OUT"; then
	ok "show table"
else
	bad "show table" "$(cat "$OUT" "$ERR")"
fi
t_ok "set multi-line string for show" "" set "$SEG" s "l1
l2"
run "$BIN" show "$SEG" s
# (the row of s: "show SEG s" also lists small, before or after it)
[ "$(grep '^s ' "$OUT" | sed 's/.*  //')" = 'l1\nl2' ] &&
	ok "show escapes control characters" || bad "show escapes control characters" "$(cat "$OUT")"
run "$BIN" show "$SEG" p
[ "$RC" -eq 0 ] && [ "$(tail -n +2 "$OUT" | awk '{print $1}' | sort | tr '\n' ' ')" = "pi pt " ] &&
	ok "show PREFIX" || bad "show PREFIX" "$(cat "$OUT")"
t_json "show --json" \
	'.segment == "'"$SEG"'" and (.values | length) == 14 and (.values[] | select(.name == "counter") | .mode == "atomic" and .value == 12 and .type == "q" and .kind == "scalar") and (.values[] | select(.name == "s") | .value == "l1\nl2" and .kind == "string") and (.values[] | select(.name == "pt") | .value.name == "start")' \
	show "$SEG" --json
t_json "show --json with PREFIX" '[.values[].name] | sort == ["pi","pt"]' show "$SEG" p --json
t_json "show --json of an empty segment" '.values == []' show "$SEG2" --json
t_fail "show unknown segment" 1 "No such file" show "$NOSEG"
t_json "info --json" \
	'.segment == "'"$SEG"'" and .values == 14 and .creator_pid > 0 and .temp == false and .age_seconds >= 0 and (.version | type) == "number"' \
	info "$SEG" --json
if is_local; then # (ls lists /dev/shm)
t_json "ls --json lists our segments" \
	'[.segments[] | select(.name == "'"$SEG"'")] | length == 1 and .[0].values == 14 and .[0].max_size > 0 and .[0].used > 0 and .[0].alive == 0' \
	ls --json
t_json "ls --json has an errors array" '.errors | type == "array"' ls --json
echo "not a segment" >/dev/shm/shval_cli_test_$$_junk
run "$BIN" ls
if [ "$RC" -eq 0 ] && grep -q "^$SEG " "$OUT" && ! grep -q "_junk" "$OUT" && [ ! -s "$ERR" ]; then
	ok "ls lists segments, skips non-segments silently"
else
	bad "ls lists segments, skips non-segments silently" "$(cat "$OUT" "$ERR")"
fi
rm -f /dev/shm/shval_cli_test_$$_junk
fi

# ---- rm, unlink -----------------------------------------------------------

t_ok "rm" "" rm "$SEG" zero
t_fail "get removed value" 1 "no such value" get "$SEG" zero
t_fail "rm unknown value" 1 "shval: rm $SEG zero: no such value" rm "$SEG" zero
t_ok "unlink" "" unlink "$SEG2"
t_fail "unlink again" 1 "shval: unlink $SEG2" unlink "$SEG2"
t_fail "create in an unlinked segment" 1 "No such file" create "$SEG2" x q
if is_local; then
	t_ok "unlink a file: segment" "" unlink "$FSEG"
	check_true "file: segment file is gone" test ! -e "$TMPD/seg.shv"
fi

# ---- wait -----------------------------------------------------------------

# A wait or watch reports changes made after it started, so the writer
# must not write before the waiter is ready: a fixed sleep is not enough on
# a loaded machine (a nice-19 waiter may not run for seconds).  bg_run
# starts the waiter in the background; wait_asleep waits (60 s at most)
# until it sleeps in its futex, i.e. it has read its start state; then the
# writer writes; bg_finish collects the status.  The waiters' own
# --timeout 60 is the hang guard (nothing waits on a wall-clock race).

# bg_run CMD...: stdout in $OUT, stderr in $ERR, pid in $BGPID.
bg_run() {
	"$@" >"$OUT" 2>"$ERR" &
	BGPID=$!
	BGPIDS+=("$BGPID")
}
# wait_asleep: until $BGPID sleeps in a futex wait (local) or its XREAD
# blocks on the server (settle, Redis); 1 if it ended first.
wait_asleep() {
	local i
	if ! is_local; then
		settle
		kill -0 "$BGPID" 2>/dev/null
		return
	fi
	for ((i = 0; i < 600; i++)); do
		case $(cat "/proc/$BGPID/wchan" 2>/dev/null) in
		*futex*) return 0 ;;
		esac
		kill -0 "$BGPID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
# wait_lines N: until $OUT has N lines (or $BGPID ended).
wait_lines() {
	local i
	for ((i = 0; i < 600; i++)); do
		[ "$(wc -l <"$OUT")" -ge "$1" ] && return 0
		kill -0 "$BGPID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
bg_finish() {
	wait "$BGPID"
	RC=$?
}

bg_run "$BIN" wait "$SEG" pi --timeout 60
wait_asleep
"$BIN" set "$SEG" pi 2.5
bg_finish
[ "$RC" -eq 0 ] && [ "$(cat "$OUT")" = "2.5" ] &&
	ok "wait wakes on a writer in another process" ||
	bad "wait wakes on a writer in another process" "status $RC" "$(cat "$OUT" "$ERR")"
bg_run "$BIN" wait "$SEG" counter --timeout 60 --json
wait_asleep
"$BIN" add "$SEG" counter 1 >/dev/null
bg_finish
[ "$RC" -eq 0 ] && [ "$(cat "$OUT")" = "13" ] &&
	ok "wait on an atomic value, --json" ||
	bad "wait on an atomic value, --json" "status $RC" "$(cat "$OUT" "$ERR")"
bg_run "$BIN" wait "$SEG" pt --timeout 60 --json
wait_asleep
"$BIN" set "$SEG" pt name=moved
bg_finish
[ "$RC" -eq 0 ] && jq -e '.name == "moved" and .x == 1.5' "$OUT" >/dev/null &&
	ok "wait on a struct --json" || bad "wait on a struct --json" "status $RC" "$(cat "$OUT" "$ERR")"
t_fail "wait times out with status 3" 3 "shval: wait $SEG pi: timed out" wait "$SEG" pi --timeout 0.2
t_fail "wait on an unknown value" 1 "no such value" wait "$SEG" nope --timeout 0.2
bg_run "$BIN" wait "$SEG" fl --timeout 60
wait_asleep
"$BIN" rm "$SEG" fl
bg_finish
[ "$RC" -eq 1 ] && grep -q "shval: wait $SEG fl: the value was removed" "$ERR" &&
	ok "wait on a value that gets removed: status 1" ||
	bad "wait on a value that gets removed: status 1" "status $RC" "$(cat "$OUT" "$ERR")"

# ---- watch ----------------------------------------------------------------

bg_run "$BIN" watch "$SEG" --count 1 --timeout 60
wait_asleep
"$BIN" set "$SEG" pi 7
bg_finish
[ "$RC" -eq 0 ] && [ "$(cat "$OUT")" = "pi=7" ] &&
	ok "watch prints name=value for a change in another process" ||
	bad "watch prints name=value for a change in another process" "status $RC" "$(cat "$OUT" "$ERR")"
bg_run "$BIN" watch "$SEG" counter --count 1 --timeout 60
wait_asleep
"$BIN" set "$SEG" pi 8
"$BIN" add "$SEG" counter 5 >/dev/null
bg_finish
[ "$RC" -eq 0 ] && [ "$(cat "$OUT")" = "counter=18" ] &&
	ok "watch NAME ignores other values" ||
	bad "watch NAME ignores other values" "status $RC" "$(cat "$OUT" "$ERR")"
# One change at a time (the next after the last line came), so that the
# lines come in the order of the changes.
bg_run "$BIN" watch "$SEG" --count 3 --timeout 60
wait_asleep
"$BIN" set "$SEG" arr 7 8 9
wait_lines 1
"$BIN" create "$SEG" late 4s hi
wait_lines 2
"$BIN" set "$SEG" s "x
y"
bg_finish
[ "$RC" -eq 0 ] && [ "$(cat "$OUT")" = 'arr=7 8 9
late=hi
s=x\ny' ] && ok "watch: several changes, a new value, escapes" ||
	bad "watch: several changes, a new value, escapes" "status $RC" "$(cat "$OUT" "$ERR")"
bg_run "$BIN" watch "$SEG" pt s --count 2 --json --timeout 60
wait_asleep
"$BIN" set "$SEG" pt x=2
wait_lines 1
"$BIN" set "$SEG" s "q\"
"
bg_finish
if [ "$RC" -eq 0 ] && [ "$(wc -l <"$OUT")" -eq 2 ] &&
	jq -e -s '.[0].name == "pt" and .[0].value.x == 2 and (.[0].version | type) == "number" and .[1].name == "s" and .[1].value == "q\"\n"' "$OUT" >/dev/null &&
	while read -r line; do printf '%s' "$line" | python3 -m json.tool >/dev/null || exit 1; done <"$OUT"; then
	ok "watch --json: one object per line"
else
	bad "watch --json: one object per line" "status $RC" "$(cat "$OUT" "$ERR")"
fi
# Same text as before: no line.  The watcher's timeout (3 s) only ends the
# case; if it ran out before the write, the case checks less, never fails.
bg_run "$BIN" watch "$SEG" pi --timeout 3
wait_asleep && "$BIN" set "$SEG" pi 8
bg_finish
[ "$RC" -eq 3 ] && [ ! -s "$OUT" ] && grep -q "shval: watch $SEG: timed out" "$ERR" &&
	ok "watch: unchanged text prints nothing, times out with 3" ||
	bad "watch: unchanged text prints nothing, times out with 3" "status $RC" "$(cat "$OUT" "$ERR")"
t_fail "watch times out with status 3" 3 "timed out" watch "$SEG" --timeout 0.2
t_fail "watch an unknown value" 1 "shval: watch $SEG nope: no such value" watch "$SEG" nope
t_fail "watch an unknown segment" 1 "No such file" watch "$NOSEG" --timeout 0.1

# ---- check ----------------------------------------------------------------

NVAL=$("$BIN" show "$SEG" --json | jq '.values | length')
run "$BIN" check "$SEG"
[ "$RC" -eq 0 ] && tail -1 "$OUT" | grep -q "^ok" && ok "check of a sound segment" ||
	bad "check of a sound segment" "status $RC" "$(cat "$OUT" "$ERR")"
t_json "check --json" '.ok == true and .errors == 0 and .checked == '"${NVAL:-0}"' and .repair == false and (.problems | type) == "array"' \
	check "$SEG" --json
t_json "check --repair --json" '.ok == true and .repair == true and .note == null' check "$SEG" --repair --json
t_fail "check of an unknown segment" 1 "No such file" check "$NOSEG"
if is_local; then # files in /dev/shm, permissions
head -c 8192 /dev/zero >/dev/shm/shval_cli_test_$$_junk
t_fail "check of a file that is not a segment" 1 "segment is damaged" check /shval_cli_test_$$_junk
rm -f /dev/shm/shval_cli_test_$$_junk

# check (without --repair) reads: read permission is enough.  The segment
# is made read-only for its owner (as root: lent to uid 65534, which runs
# the check, since root ignores permission bits).
SEGRO=/shval_cli_test_$$_ro
RO=()
"$BIN" new "$SEGRO" >/dev/null 2>&1 && "$BIN" create "$SEGRO" x q 5 >/dev/null 2>&1
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
	chown 65534:65534 /dev/shm"$SEGRO"
	RO=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
chmod 0400 /dev/shm"$SEGRO"
run "${RO[@]}" "$BIN" check "$SEGRO" --json
if [ "$RC" -eq 0 ] && jq -e '.ok == true and .checked == 1' "$OUT" >/dev/null 2>&1; then
	ok "check needs read permission only"
else
	bad "check needs read permission only" "status $RC" "stdout: $(cat "$OUT")" \
		"stderr: $(cat "$ERR")"
fi
run "${RO[@]}" "$BIN" check "$SEGRO" --repair
[ "$RC" -ne 0 ] && grep -q "Permission denied\|read-only" "$ERR" &&
	ok "check --repair without write permission: an error" ||
	bad "check --repair without write permission: an error" "status $RC" \
		"stdout: $(cat "$OUT")" "stderr: $(cat "$ERR")"
chmod 0600 /dev/shm"$SEGRO"
[ "$(id -u)" -eq 0 ] && chown 0:0 /dev/shm"$SEGRO"
"$BIN" unlink "$SEGRO" >/dev/null 2>&1
fi

# ---- through the library (ctypes): NUL bytes, a lock owner that dies -------

if [ -e "$LIB" ] &&
	python3 -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' "$LIB" >/dev/null 2>&1; then
	t_ok "create string for NULs" "" create "$SEG" nul 8s
	python3 - "$LIB" "$SEG" <<'EOF'
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
seg, v = ctypes.c_void_p(), ctypes.c_void_p()
assert lib.shval_seg_open(sys.argv[2].encode(), 0, None, ctypes.byref(seg)) == 0
assert lib.shval_find(seg, b"nul", None, ctypes.byref(v)) == 0
assert lib.shval_set_str(v, b"a\0b\0", ctypes.c_size_t(4)) == 0
EOF
	[ $? -eq 0 ] && ok "ctypes helper: set a string with NULs" || bad "ctypes helper: set a string with NULs"
	# (a NUL cannot come back through an argument: get prints such a
	# string in the quoted form that set parses; --json has the bytes)
	t_ok "get prints a string with NULs quoted, as set parses it" '"a\0b\0"' get "$SEG" nul
	t_json "get --json keeps NULs as \\u0000" '. == "a\u0000b\u0000"' get "$SEG" nul --json
	grep -qF '"a\u0000b\u0000"' "$OUT" && ok "JSON text has \\u0000" || bad "JSON text has \\u0000" "$(cat "$OUT")"
	run "$BIN" show "$SEG" nul
	tail -1 "$OUT" | grep -qF 'a\0b\0' && ok "show escapes NULs" || bad "show escapes NULs" "$(cat "$OUT")"
else
	echo "skip - ctypes tests ($LIB missing or not loadable)"
fi
# a lock owner that dies in a section through shval_data(), dead attached
# processes, temporary segments: local only
if is_local && [ -e "$LIB" ] &&
	python3 -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' "$LIB" >/dev/null 2>&1; then

	t_ok "create a locked value" "" create "$SEG" held q 42
	python3 - "$LIB" "$SEG" <<'EOF'
import ctypes, os, sys
lib = ctypes.CDLL(sys.argv[1])
lib.shval_data.restype = ctypes.c_void_p
seg, v = ctypes.c_void_p(), ctypes.c_void_p()
assert lib.shval_seg_open(sys.argv[2].encode(), 0, None, ctypes.byref(seg)) == 0
assert lib.shval_find(seg, b"held", None, ctypes.byref(v)) == 0
assert lib.shval_lock(v) == 0
ctypes.c_int64.from_address(lib.shval_data(v)).value = 666  # uncommitted
os._exit(7)                                                 # dies holding it
EOF
	[ $? -eq 7 ] && ok "ctypes helper: die holding a lock" || bad "ctypes helper: die holding a lock"
	t_ok "a reader sees the last committed value" "42" get "$SEG" held
	t_json "info shows the dead process" '.dead >= 1 and ([.processes[] | select(.alive == false)] | length) >= 1' info "$SEG" --json
	t_json "ls --json shows the dead process" \
		'[.segments[] | select(.name == "'"$SEG"'" and .dead >= 1)] | length == 1' ls --json
	run "$BIN" check "$SEG"
	[ "$RC" -eq 1 ] && grep -q "^warning: process [0-9]* died while attached" "$OUT" &&
		grep -q "^error: value held: lock held by a dead or foreign thread" "$OUT" &&
		ok "check reports the dead process and its lock, leaves the lock alone" ||
		bad "check reports the dead process and its lock, leaves the lock alone" "status $RC" "$(cat "$OUT" "$ERR")"
	t_ok "check did not touch the value" "42" get "$SEG" held
	t_json "check --repair recovers the dead lock owner, frees dead processes' attach slots" \
		'.ok == true and ([.problems[] | select(.kind == "dead_lock_owner" and .value == "held" and .repaired)] | length) == 1 and ([.problems[] | select(.kind == "dead_process" and .repaired and (.message | test("attach slot freed")))] | length) >= 1 and .repaired == ([.problems[] | select(.repaired)] | length)' \
		check "$SEG" --repair --json
	t_json "no dead process attached after --repair" '.dead == 0' info "$SEG" --json
	t_json "check --repair again: nothing to repair" '.ok == true and .repaired == 0' check "$SEG" --repair --json
	t_ok "value rolled back to the last commit" "42" get "$SEG" held
	t_ok "the lock works again" "43" add "$SEG" held 1

	python3 - "$LIB" /shval_cli_test_$$_tmp <<'EOF'
import ctypes, os, sys
lib = ctypes.CDLL(sys.argv[1])
seg = ctypes.c_void_p()
SHVAL_CREATE, SHVAL_TEMP = 0x01, 0x08
assert lib.shval_seg_open(sys.argv[2].encode(), SHVAL_CREATE | SHVAL_TEMP,
                          None, ctypes.byref(seg)) == 0
os._exit(7)                 # dies attached: the segment stays behind
EOF
	[ $? -eq 7 ] && [ -e /dev/shm/shval_cli_test_$$_tmp ] &&
		ok "ctypes helper: a temporary segment left by a dead process" ||
		bad "ctypes helper: a temporary segment left by a dead process"
	run "$BIN" ls
	# (the exact name: a bare "_tmp" also matched the temporary segments of
	# other cli_test runs on the machine, alive at that moment)
	[ "$RC" -eq 0 ] && ! grep -q "^/shval_cli_test_$$_tmp " "$OUT" &&
		[ ! -e /dev/shm/shval_cli_test_$$_tmp ] &&
		ok "ls cleans up a dead temporary segment" ||
		bad "ls cleans up a dead temporary segment" "status $RC" "$(cat "$OUT" "$ERR")"
fi

# ---- temporary segments ---------------------------------------------------

if is_local; then
	t_ok "new --temp" "" new /shval_cli_test_$$_tmp --temp
	check_true "a temporary segment goes with its last process" \
		test ! -e /dev/shm/shval_cli_test_$$_tmp
else
	t_fail "new --temp: not offered on Redis" 1 "SHVAL_TEMP is not offered" new "$SEG2" --temp
fi

# ---- hostile names and files (issue 11) -------------------------------------

if is_local; then # squatted and foreign files
HF=/shval_cli_test_$$_fifo
mkfifo /dev/shm${HF}
run "$BIN" ls
[ "$RC" -eq 0 ] && ! grep -q "_fifo" "$OUT" && ok "ls skips a FIFO squatting in /dev/shm" ||
	bad "ls skips a FIFO squatting in /dev/shm" "status $RC (124: hung)" "$(cat "$OUT" "$ERR")"
t_fail "info on a FIFO fails at once" 1 "is a FIFO, not a regular file" info "$HF"
t_fail "get on a FIFO fails at once" 1 "is a FIFO" get "$HF" x
t_fail "show on a FIFO fails at once" 1 "is a FIFO" show "$HF"
t_fail "unlink refuses a FIFO" 1 "not a shval segment" unlink "$HF"
check_true "the FIFO is still there" test -p /dev/shm${HF}
t_ok "unlink --force removes it" "" unlink "$HF" --force
check_true "the FIFO is gone" test ! -e /dev/shm${HF}
echo "precious" >"$TMPD/plain"
t_fail "unlink refuses a file that is not a segment" 1 "not a shval segment" unlink "file:$TMPD/plain"
check_true "the file is still there" test -e "$TMPD/plain"
t_ok "unlink --force removes it" "" unlink "file:$TMPD/plain" --force
check_true "the file is gone" test ! -e "$TMPD/plain"
if [ "$(id -u)" = 0 ]; then
	mkdir -m 0777 "$TMPD/open" && chmod 0777 "$TMPD/open"
	t_fail "new through a world-writable directory is refused" 1 "writable by others" new "file:$TMPD/open/seg"
	check_true "nothing was created there" test ! -e "$TMPD/open/seg"
	rmdir "$TMPD/open"
fi
fi

# set parses what get prints: every letter, arrays, strings holding NULs,
# quotes and invalid UTF-8, struct string fields (issue 11)
python3 - "$BIN" "$SEG" <<'PYRT'
import json, subprocess, sys
BIN, SEG = sys.argv[1].encode(), sys.argv[2].encode()

def sh(*args, ok=True):
    p = subprocess.run([BIN] + [a if isinstance(a, bytes) else a.encode() for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    if ok and p.returncode != 0:
        raise SystemExit("shval %r: status %d: %r" % (args, p.returncode, p.stderr))
    return p

def split_fields(b):
    # get's struct text: field=value separated by spaces, a quoted string
    # ("..." with C escapes) may hold spaces
    out, cur, inq, esc = [], b"", False, False
    for ch in b:
        c = bytes([ch])
        if inq:
            cur += c
            if esc: esc = False
            elif c == b"\\": esc = True
            elif c == b'"': inq = False
        elif c == b'"':
            cur += c; inq = True
        elif c == b" ":
            out.append(cur); cur = b""
        else:
            cur += c
    out.append(cur)
    return out

cases = [  # type, set arguments (as a user types them), expected JSON
    ("c", ["x"], "x"), ("c", [" "], " "), ("b", ["-128"], -128), ("B", ["255"], 255),
    ("h", ["-32768"], -32768), ("H", ["65535"], 65535), ("i", ["-5"], -5),
    ("I", ["4294967295"], 4294967295), ("l", ["-9223372036854775808"], -9223372036854775808),
    ("L", ["18446744073709551615"], 18446744073709551615), ("q", ["42"], 42),
    ("Q", ["0x10"], 16), ("n", ["-1"], -1), ("N", ["7"], 7), ("?", ["true"], True),
    ("f", ["0.1"], 0.1), ("f", ["-inf"], "-inf"), ("d", ["1e-300"], 1e-300),
    ("d", ["nan"], "nan"), ("d", ["-0"], -0.0), ("u", ["\u00e9"], "\u00e9"),
    ("u", ["\U0001f600"], "\U0001f600"),
    ("3d", ["1.5", "-2", "inf"], [1.5, -2, "inf"]), ("3c", ["a", "b", "c"], ["a", "b", "c"]),
    ("2?", ["true", "false"], [True, False]),
    ("16s", ["hello world"], "hello world"), ("16s", [b"caf\xc3\xa9 \\ x"], "caf\u00e9 \\ x"),
    ("16s", ['"a\\0b\\x01"'], "a\u0000b\u0001"), ("16s", ['"\\"quoted\\""'], '"quoted"'),
    ("16s", ['"\\xff\\n"'], "\u00ff\n"), ("16s", ['""'], ""), ("16s", ["tab\there"], "tab\there"),
    ("name:16s x:d", ['name="start"', "x=1.5"], {"name": "start", "x": 1.5}),
    ("name:16s n:3i", ['name="a\\0b\\x01"', "n=1,2,3"], {"name": "a\u0000b\u0001", "n": [1, 2, 3]}),
    ("name:16s c:c u:u f:?", ['name=say "hi"', "c=z", "u=\u00e9", "f=1"],
     {"name": 'say "hi"', "c": "z", "u": "\u00e9", "f": True}),
    ("name:16s", ['name="x y\\tz\\\\"'], {"name": "x y\tz\\"}),
    ("16s 16s", ['0="a b"', '1="\\"\\0"'], ["a b", '"\u0000']),
]
bad = 0
for i, (typ, args, want) in enumerate(cases):
    name = "rt%d" % i
    sh("create", SEG, name, typ, *args)
    got = json.loads(sh("get", SEG, name, "--json").stdout)
    same = got == want or (want == "nan" and got == "nan") or (
        isinstance(want, float) and str(got) == str(want))
    if not same:
        print("FAIL - created %s %r: JSON %r, want %r" % (typ, args, got, want)); bad += 1
        continue
    text = sh("get", SEG, name).stdout
    assert text.endswith(b"\n")
    text = text[:-1]
    if ":" in typ or typ == "16s 16s":
        back = split_fields(text)          # a struct: field=value each
    elif typ[0].isdigit() and not typ.endswith("s"):
        back = text.split(b" ")            # an array: one per element
    else:
        back = [text]                      # a scalar or a string
    # set from get's text, then get again: the same, to the byte
    p = sh("set", SEG, name, *back, ok=False)
    again = sh("get", SEG, name).stdout[:-1]
    jagain = json.loads(sh("get", SEG, name, "--json").stdout)
    if p.returncode != 0 or again != text or jagain != got and not (got != got):
        print("FAIL - %s: get printed %r, set %r -> status %d %r, get then %r" %
              (typ, text, back, p.returncode, p.stderr, again)); bad += 1
    else:
        print("ok   - round trip %s: %r" % (typ, text))
    sh("rm", SEG, name)
sys.exit(1 if bad else 0)
PYRT
[ $? -eq 0 ] && ok "get/set round trip of every type" || bad "get/set round trip of every type"

# names and paths that are not UTF-8
t_fail "create refuses a name that is not UTF-8" 1 "UTF-8" create "$SEG" $'bad\xff' q
t_fail "create refuses a C1 control in a name" 1 "UTF-8" create "$SEG" $'x\xc2\x9b31m' q
t_ok "create accepts a UTF-8 name" "" create "$SEG" $'caf\xc3\xa9' q 5
t_json "show --json with a UTF-8 name" '[.values[] | select(.name == "caf\u00e9")] | length == 1' show "$SEG" --json
if is_local; then # paths; damage in the mapped image
U8SEG="file:$TMPD/"$'seg\xff'
t_ok "new file: segment whose path is not UTF-8" "" new "$U8SEG"
t_json "info --json of it stays valid JSON" '.segment == "file:'"$TMPD"'/seg\u00ff"' info "$U8SEG" --json
"$BIN" unlink "$U8SEG"

# one damaged name fails its row of show, not the others
DS=/shval_cli_test_$$_dmg
"$BIN" new "$DS" && "$BIN" create "$DS" alpha q 1 && "$BIN" create "$DS" victim_name q 2 &&
	"$BIN" create "$DS" omega q 3
python3 - /dev/shm$DS <<'EOF'
import mmap, sys
with open(sys.argv[1], "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
    i = m.find(b"victim_name")
    assert i > 0
    m[i:i + 1] = b"\x1b"  # ESC: no longer matches its directory slot
EOF
run "$BIN" show "$DS"
[ "$RC" -eq 1 ] && grep -q "^alpha " "$OUT" && grep -q "^omega " "$OUT" &&
	grep -q "^shval: show $DS: segment is damaged" "$ERR" &&
	ok "show: a damaged entry fails its row only" ||
	bad "show: a damaged entry fails its row only" "status $RC" "$(cat "$OUT" "$ERR")"
run "$BIN" check "$DS"
[ "$RC" -eq 1 ] && grep -q 'value \\x1bictim_name: name does not match' "$OUT" &&
	! grep -q $'\x1b' "$OUT" "$ERR" &&
	ok "check shows a damaged name's ESC byte escaped" ||
	bad "check shows a damaged name's ESC byte escaped" "status $RC" "$(od -c "$OUT" | head -20)"
run "$BIN" show "$DS" --json
[ "$RC" -eq 1 ] && jq -e '[.values[].name] == ["alpha", "omega"] or [.values[].name] == ["omega", "alpha"]' "$OUT" >/dev/null &&
	ok "show --json: valid JSON of the readable rows" ||
	bad "show --json: valid JSON of the readable rows" "status $RC" "$(cat "$OUT" "$ERR")"
"$BIN" unlink "$DS"
fi

# terminal escapes in names never reach the terminal raw (issue 11)
run "$BIN" get "$SEG" $'\e]2;pwned\a'
[ "$RC" -eq 1 ] && ! grep -q $'\x1b' "$ERR" && grep -qF '\x1b]2;pwned\x07' "$ERR" &&
	ok "get: an OSC sequence in a name is escaped in the message" ||
	bad "get: an OSC sequence in a name is escaped in the message" "$(od -c "$ERR" | head)"
run "$BIN" info $'file:/nonexistent/\e[31mred\xc2\x9b1m'
[ "$RC" -eq 1 ] && ! grep -q $'\x1b' "$ERR" && ! grep -q $'\xc2\x9b' "$ERR" &&
	grep -qF '\x1b[31mred\xc2\x9b1m' "$ERR" &&
	ok "info: ESC and C1 CSI in a path are escaped in the message" ||
	bad "info: ESC and C1 CSI in a path are escaped in the message" "$(od -c "$ERR" | head)"
run "$BIN" $'\e[2J'
[ "$RC" -eq 2 ] && ! grep -q $'\x1b' "$ERR" &&
	ok "usage error: an ESC in an unknown command is escaped" ||
	bad "usage error: an ESC in an unknown command is escaped" "$(od -c "$ERR" | head)"
run "$BIN" set "$SEG" counter $'\e[1m'
[ "$RC" -eq 1 ] && ! grep -q $'\x1b' "$ERR" &&
	ok "set: an ESC in a bad value is escaped in the message" ||
	bad "set: an ESC in a bad value is escaped in the message" "$(od -c "$ERR" | head)"

# the library's detail is kept, also when it repeats the error's text
# (not in sanitizer runs: ASan and TSan reserve terabytes of shadow
# address space, which `ulimit -v` refuses before main() runs)
if ! is_local; then
	: # (a Redis segment maps nothing)
elif [ -n "${ASAN_OPTIONS:-}${TSAN_OPTIONS:-}" ]; then
	ok "ENOMEM keeps the library's detail (skipped: sanitizer build)"
else
	run bash -c 'ulimit -v 300000; exec "$0" info "$1"' "$BIN" "$SEG"
	[ "$RC" -eq 1 ] && grep -q "mmap of 1073741824 bytes" "$ERR" &&
		ok "ENOMEM keeps the library's detail (mmap of N bytes)" ||
		bad "ENOMEM keeps the library's detail (mmap of N bytes)" "status $RC" "$(cat "$ERR")"
fi

# ---- output errors --------------------------------------------------------

if [ -w /dev/full ]; then
	timeout 20 "$BIN" get "$SEG" counter >/dev/full 2>"$ERR"
	RC=$?
	[ "$RC" -eq 1 ] && grep -q "error writing output" "$ERR" &&
		ok "write error on stdout: status 1" || bad "write error on stdout: status 1" "status $RC"
fi

# ---- what only Redis segments have ----------------------------------------

if ! is_local; then
	# the unix-socket form: the same segment as over TCP
	USEG="redis+unix://$RDIR/sock?prefix=clitest$$"
	t_ok "redis+unix: get the TCP segment's value" "18" get "$USEG" counter
	t_ok "redis+unix: add" "19" add "$USEG" counter 1
	t_ok "redis+unix: seen over TCP" "19" get "$SEG" counter
	t_ok "redis+unix: new on another prefix" "" new "redis+unix://$RDIR/sock?prefix=cliu$$"
	t_ok "redis+unix: unlink" "" unlink "redis+unix://$RDIR/sock?prefix=cliu$$"
	t_fail "wrong password" 1 "shval: new" new "redis://:nope@127.0.0.1:$PORT/pw"
	grep -q "nope" "$ERR" && bad "the password is not shown" "$(cat "$ERR")" ||
		ok "the password is not shown"
	redis-cli -s "$RDIR/sock" set forx:other 1 >/dev/null
	t_fail "a prefix holding foreign keys is refused" 1 "not a shval segment's" \
		new "redis://127.0.0.1:$PORT/forx"
	[ "$(redis-cli -s "$RDIR/sock" get forx:other)" = 1 ] &&
		ok "the foreign key is untouched" || bad "the foreign key is untouched"
	t_fail "nobody listening" 1 "shval: get" get "redis://127.0.0.1:1/x?timeout_ms=200" v
fi

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
