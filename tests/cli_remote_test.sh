#!/usr/bin/env bash
# tests/cli_remote_test.sh — the shval(1) commands on every kind of
# segment: a local one, redis://127.0.0.1:PORT/P and
# redis+unix://SOCK?prefix=P, against a redis-server this script starts
# in DIR (inside the build tree) and stops.  The same commands must give
# the same output on each kind.
#
#   usage: tests/cli_remote_test.sh PATH/TO/shval DIR
#
# redis-server missing is a failure (make test installs it).
set -u
BIN=$1
DIR=$2/cli.$$
PASS=0
FAIL=0
mkdir -p "$DIR"
if ! command -v redis-server >/dev/null; then
	echo "FAIL - redis-server is not installed (make deps installs Debian's redis-server)"
	exit 1
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --unixsocket "$DIR/sock" \
	--unixsocketperm 700 --dir "$DIR" --logfile "$DIR/log" --save '' \
	--appendonly no --daemonize no </dev/null &
RPID=$!
BGPIDS=()
cleanup() {
	for p in "${BGPIDS[@]}"; do kill "$p" 2>/dev/null; done
	"$BIN" unlink "/shval_cli_remote_$$" >/dev/null 2>&1
	kill "$RPID" 2>/dev/null
	wait "$RPID" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT
for i in $(seq 100); do
	[ -S "$DIR/sock" ] && redis-cli -s "$DIR/sock" ping >/dev/null 2>&1 && break
	sleep 0.05
done

# Wait until a waiter sleeps on SEG.
blocked() {
	case $1 in
	redis*)
		for i in $(seq 200); do
			redis-cli -s "$DIR/sock" client list 2>/dev/null | grep -q 'cmd=xread' && return
			sleep 0.05
		done ;;
	*) sleep 1 ;;
	esac
}
ok() { PASS=$((PASS + 1)); echo "ok   - $1"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL - $1"; shift; for l in "$@"; do echo "       $l"; done; }

# t DESC WANT_RC WANT_STDOUT args...
t() {
	local desc=$1 rc=$2 want=$3
	shift 3
	local got
	got=$(timeout 20 "$BIN" "$@" 2>"$DIR/err")
	local r=$?
	if [ "$r" = "$rc" ] && [ "$got" = "$want" ]; then
		ok "$desc"
	else
		bad "$desc" "status $r (want $rc)" "stdout: $got" "want:   $want" "stderr: $(cat "$DIR/err")"
	fi
}

for SEG in "/shval_cli_remote_$$" "redis://127.0.0.1:$PORT/clit$$" \
	"redis+unix://$DIR/sock?prefix=cliu$$"; do
	K="[$SEG]"
	t "$K new" 0 "" new "$SEG"
	t "$K new again" 1 "" new "$SEG"
	t "$K create" 0 "" create "$SEG" n q 5
	t "$K create atomic" 0 "" create "$SEG" c B --atomic 250
	t "$K create struct" 0 "" create "$SEG" p "x:d name:8s" x=1.5 name=hi
	t "$K create bad" 1 "" create "$SEG" bad b 300
	t "$K get" 0 "5" get "$SEG" n
	t "$K add" 0 "8" add "$SEG" n 3
	t "$K add wraps" 0 "4" add "$SEG" c 10
	t "$K set" 0 "" set "$SEG" p name=yo
	t "$K set bad" 1 "" set "$SEG" p name=toolongname
	t "$K get struct" 0 'x=1.5 name="yo"' get "$SEG" p
	t "$K get json" 0 '{"x":1.5,"name":"yo"}' get "$SEG" p --json
	t "$K get missing" 1 "" get "$SEG" nope
	got=$(timeout 20 "$BIN" show "$SEG" | awk '{print $1, $2, $3}')
	want=$'NAME TYPE MODE\nc B atomic\nn q rlock\np x:d name:8s'
	[ "$got" = "$want" ] && ok "$K show" || bad "$K show" "$got"
	got=$(timeout 20 "$BIN" ls "$SEG" | awk 'NR==2 {print $1, $3}')
	[ "$got" = "$SEG 3" ] && ok "$K ls" || bad "$K ls" "$got"
	timeout 20 "$BIN" info "$SEG" | grep -q "values: *3" && ok "$K info" || bad "$K info"
	# wait: a writer changes the value once the waiter sleeps (a Redis
	# waiter shows as a client blocked in XREAD; a local one: 1 s)
	(blocked "$SEG"; "$BIN" add "$SEG" n 1 >/dev/null) &
	BGPIDS+=($!)
	t "$K wait" 0 "9" wait "$SEG" n --timeout 10
	t "$K wait timeout" 3 "" wait "$SEG" n --timeout 0.2
	(blocked "$SEG"; "$BIN" add "$SEG" n 1 >/dev/null; "$BIN" set "$SEG" p x=2 >/dev/null) &
	BGPIDS+=($!)
	t "$K watch" 0 $'n=10\np=x=2 name="yo"' watch "$SEG" n p --count 2 --timeout 10
	t "$K check" 0 "$SEG: 3 values checked"$'\n'"ok" check "$SEG"
	t "$K rm" 0 "" rm "$SEG" n
	t "$K rm again" 1 "" rm "$SEG" n
	t "$K unlink" 0 "" unlink "$SEG"
	t "$K info gone" 1 "" info "$SEG"
done
t "wrong password" 1 "" new "redis://:nope@127.0.0.1:$PORT/pw"
redis-cli -s "$DIR/sock" set forx:other 1 >/dev/null
t "foreign keys refused" 1 "" new "redis://127.0.0.1:$PORT/forx"
echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
