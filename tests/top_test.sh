#!/usr/bin/env bash
# tests/top_test.sh — `shval top` used as a person uses it: it runs in a
# tmux pane (Debian's tmux, installed by make deps), other processes change
# the segment with the shval CLI, and the screen is read back with
# `tmux capture-pane -p`.  Checks values, rates, ages, sorting, the filter
# (key and --filter), escaping of control bytes, values appearing and
# going, that q and Ctrl-C exit with status 0 and leave the terminal as
# they found it (stty -g before and after, tmux's alternate_on, cursor and
# wrap flags), and the same on a redis+unix:// segment (a redis-server
# this script starts in DIR).  Every screen check is a polling loop with a
# deadline (no timing thresholds).
#
#   usage: tests/top_test.sh PATH/TO/shval DIR
set -u
BIN=$1
DIR=$(cd "$2" && pwd)/top.$$
SEG=/shval_top_test_$$
SOCK=/tmp/shval_top_test_$$.tmux # tmux's socket: a short path of our own
MULT=${SHVAL_TEST_TIMEOUT_MULTIPLIER:-1}
DEADLINE=$((20 * MULT)) # seconds for one screen check
PASS=0
FAIL=0
BGPIDS=()
RPID=
mkdir -p "$DIR"
T() { tmux -S "$SOCK" "$@"; }
cleanup() {
	for p in "${BGPIDS[@]}"; do kill "$p" 2>/dev/null; done
	T kill-server 2>/dev/null
	rm -f "$SOCK"
	"$BIN" unlink "$SEG" >/dev/null 2>&1
	if [ -n "$RPID" ]; then
		kill "$RPID" 2>/dev/null
		wait "$RPID" 2>/dev/null
	fi
	rm -rf "$DIR"
}
trap cleanup EXIT
ok() { PASS=$((PASS + 1)); echo "ok   - $1"; }
bad() {
	FAIL=$((FAIL + 1))
	echo "FAIL - $1"
	echo "       screen:"
	T capture-pane -p -t top 2>/dev/null | sed 's/^/       | /'
}
for c in tmux; do
	if ! command -v $c >/dev/null; then
		echo "FAIL - $c is not installed (make deps installs Debian's $c)"
		exit 1
	fi
done

screen() { T capture-pane -p -t top; }
# The names in the rows, top to bottom (lines 3 .. the last but one).
names() { screen | sed -n '3,29p' | awk 'NF >= 4 { print $1 }' | tr '\n' ' '; }
# Column N (1 name, 2 value, 3 rate, 4 age) of the row of NAME.
col() { screen | sed -n '3,29p' | awk -v n="$1" -v c="$2" '$1 == n { print $c }'; }

# until DESC CMD...: run CMD until it succeeds or the deadline passes.
until_ok() {
	local desc=$1
	shift
	local end=$((SECONDS + DEADLINE))
	while [ $SECONDS -lt $end ]; do
		if "$@"; then
			ok "$desc"
			return 0
		fi
		sleep 0.1
	done
	bad "$desc"
	return 1
}
shows() { screen | grep -Eq -- "$1"; }
not_shows() { ! screen | grep -Eq -- "$1"; }
names_are() { [ "$(names)" = "$1 " ]; }
rate_positive() { awk -v r="$(col "$1" 3)" 'BEGIN { exit !(r + 0 > 0) }'; }
rate_negative() { awk -v r="$(col "$1" 3)" 'BEGIN { exit !(r + 0 < 0) }'; }
rate_zero() { [ "$(col "$1" 3)" = "0" ]; }
# top has exited: the marker the pane's script prints after it
exited() { shows "^top-exited-$1\$"; }

# start_top SEG ARGS...: a fresh tmux pane running top; its status and the
# terminal settings before and after go to $DIR.
start_top() {
	local seg=$1
	shift
	T kill-server 2>/dev/null
	rm -f "$DIR/status" "$DIR/before" "$DIR/after"
	# The pane's script: settings before, top, status, settings after.
	cat >"$DIR/pane.sh" <<EOF
stty -g >"$DIR/before"
"$BIN" top "$seg" $*
s=\$?
echo \$s >"$DIR/status"
stty -g >"$DIR/after"
echo top-exited-\$s
exec sleep 600
EOF
	# The old server may still be going away (its socket in place); a
	# new-session racing it fails with "server exited unexpectedly" (seen
	# under load): wait for it, start afresh, and retry a failed start.
	for _ in $(seq 100); do
		T has-session 2>/dev/null || break
		sleep 0.05
	done
	rm -f "$SOCK"
	for _ in 1 2 3 4 5; do
		T -f /dev/null new-session -d -s top -x 120 -y 30 \
			"sh $DIR/pane.sh" && return 0
		sleep 0.2
		T kill-server 2>/dev/null
		rm -f "$SOCK"
	done
	echo "tmux did not start a session on $SOCK"
	return 1
}

# after_exit WHAT: status 0, the terminal as before, the normal screen.
after_exit() {
	until_ok "$1: top exited, its status and the terminal settings written" \
		test -s "$DIR/after" || return
	if [ "$(cat "$DIR/status")" = 0 ]; then ok "$1: exit status 0"; else
		bad "$1: exit status $(cat "$DIR/status")"; fi
	if cmp -s "$DIR/before" "$DIR/after"; then
		ok "$1: terminal settings restored (stty -g)"
	else
		bad "$1: terminal settings differ: $(cat "$DIR/before") -> $(cat "$DIR/after")"
	fi
	until_ok "$1: the normal screen is back (the pane's own output shows)" exited 0
	local flags
	flags=$(T display -p -t top '#{alternate_on} #{cursor_flag} #{wrap_flag}')
	if [ "$flags" = "0 1 1" ]; then
		ok "$1: alternate screen left, cursor shown, line wrap back on"
	else
		bad "$1: alternate_on cursor_flag wrap_flag = $flags (want 0 1 1)"
	fi
}

# ---- a local segment ----------------------------------------------------
S() { "$BIN" "$@" >/dev/null; }
S new "$SEG"
S create "$SEG" hits q --atomic
S create "$SEG" temp d
S set "$SEG" temp 21.5
S create "$SEG" 'req{code="200"}' Q --atomic
S add "$SEG" 'req{code="200"}' 7
S create "$SEG" zz.depth i
S set "$SEG" zz.depth -3
S create "$SEG" label 32s
S set "$SEG" label '"a\x1b[31mred"' # an ESC byte in the value

start_top "$SEG"
until_ok "all five values shown, sorted by name" \
	names_are 'hits label req{code="200"} temp zz.depth'
until_ok "values: numbers exact" shows '^temp +21\.5 '
until_ok "the ESC byte in a value is shown escaped" shows '^label +a\\x1b\[31mred '
if T capture-pane -p -e -t top | grep -q $'\033\\[31m'; then
	bad "a raw ESC [31m reached the terminal (capture-pane -e shows red)"
else
	ok "no raw escape sequence from a value reached the terminal"
fi
until_ok "unchanged values: no rate change, age '>' since start" \
	eval '[ "$(col temp 3)" = 0 ] && col temp 4 | grep -q "^>"'
until_ok "strings have no rate" eval '[ "$(col label 3)" = "-" ]'

S set "$SEG" temp 25.25
until_ok "a change from another process is shown" shows '^temp +25\.25 '
until_ok "its age restarts (seconds, no '>')" eval 'col temp 4 | grep -Eq "^[0-9]+s$"'

# Rates: one process adds to hits, another subtracts from zz.depth.
(while :; do "$BIN" add "$SEG" hits 10 >/dev/null; sleep 0.05; done) &
BGPIDS+=($!)
(while :; do "$BIN" add "$SEG" zz.depth -5 >/dev/null; sleep 0.05; done) &
BGPIDS+=($!)
until_ok "a growing counter has a positive rate" rate_positive hits
until_ok "a falling value has a negative rate" rate_negative zz.depth

# Sorting.
T send-keys -t top r
until_ok "r: by rate, largest first, the value without a rate last" \
	eval 'names | grep -Eq "^hits .* zz\.depth label $"'
T send-keys -t top r
until_ok "r again: smallest rate first (rate-less still last)" \
	eval 'names | grep -Eq "^zz\.depth .* hits label $"'
T send-keys -t top a
until_ok "a: the latest change first, unchanged values last" \
	eval 'names | grep -Eq "^(hits|zz\.depth) (hits|zz\.depth) temp (label|req\{code=\"200\"\}) (label|req\{code=\"200\"\}) $"'
kill "${BGPIDS[@]}" 2>/dev/null
wait "${BGPIDS[@]}" 2>/dev/null
BGPIDS=()
until_ok "rates go back to 0 once the changes stop" \
	eval 'rate_zero hits && rate_zero zz.depth'
S set "$SEG" hits 100000
S set "$SEG" zz.depth -3
T send-keys -t top v
until_ok "v: by value, largest first, strings last" \
	names_are 'hits temp req{code="200"} zz.depth label'
until_ok "the header says so" shows 'sort: value descending'
T send-keys -t top v
until_ok "v again: smallest first" \
	names_are 'zz.depth req{code="200"} temp hits label'
T send-keys -t top n
until_ok "n: by name again" names_are 'hits label req{code="200"} temp zz.depth'
T send-keys -t top n
until_ok "n again: names Z-A" names_are 'zz.depth temp req{code="200"} label hits'
T send-keys -t top n

# The filter.
T send-keys -t top / t e
until_ok "/te: the filter applies while typed, shown on the last line" \
	eval 'names_are temp && screen | tail -1 | grep -q "^filter: te_"'
T send-keys -t top Enter
until_ok "Enter keeps it; the header names it" \
	eval 'names_are temp && shows "5 values, 1 shown .*filter: \"te\""'
S set "$SEG" temp 30.5
until_ok "filtered rows still follow changes" shows '^temp +30\.5 '
T send-keys -t top / C-u x
until_ok "Ctrl-U clears, x matches nothing" shows '5 values, 0 shown'
T send-keys -t top Escape
until_ok "Esc restores the filter before editing" names_are temp
T send-keys -t top / C-u Enter
until_ok "an empty filter shows all again" \
	names_are 'hits label req{code="200"} temp zz.depth'

# Values that appear and go.
S create "$SEG" new.one q
until_ok "a value created meanwhile appears" \
	names_are 'hits label new.one req{code="200"} temp zz.depth'
S rm "$SEG" label
until_ok "a removed value goes" \
	names_are 'hits new.one req{code="200"} temp zz.depth'

T send-keys -t top q
after_exit "q"

# --filter and --sort at start, Ctrl-C to leave.
start_top "$SEG" --filter e --sort value
until_ok "--filter e --sort value at start" \
	names_are 'temp req{code="200"} new.one zz.depth'
T send-keys -t top C-c
after_exit "Ctrl-C"

# A SIGTERM from elsewhere restores the terminal too.
start_top "$SEG"
until_ok "top runs again" shows '^temp +30\.5 '
ppid=$(T display -p -t top '#{pane_pid}')
tpid=$(ps -o pid= --ppid "$ppid" | tr -d ' ')
# Ctrl-Z: the terminal as it was while stopped; SIGCONT takes it back.
tty=$(T display -p -t top '#{pane_tty}')
T send-keys -t top C-z
until_ok "Ctrl-Z: top stops" eval '[ "$(ps -o stat= -p "$tpid" | cut -c1)" = T ]'
until_ok "Ctrl-Z: while stopped, the normal screen and the settings from before" \
	eval '[ "$(T display -p -t top "#{alternate_on} #{cursor_flag}")" = "0 1" ] &&
	      [ "$(stty -g -F "$tty")" = "$(cat "$DIR/before")" ]'
kill -CONT "$tpid"
until_ok "SIGCONT: back on the alternate screen, redrawn" \
	eval '[ "$(T display -p -t top "#{alternate_on}")" = 1 ] && shows "^temp +30\.5 "'
if [ -n "$tpid" ] && kill -TERM "$tpid"; then
	after_exit "SIGTERM"
else
	bad "could not find top's pid under the pane's shell $ppid"
fi

# Usage and environment errors.
out=$("$BIN" top "$SEG" </dev/null 2>&1)
r=$?
if [ $r = 1 ] && echo "$out" | grep -q "must be a terminal"; then
	ok "not a terminal: exit 1 with a message"
else bad "not a terminal: status $r: $out"; fi
for args in "--sort size" "--interval 0" "--interval x" "--bogus" "" "$SEG $SEG" "--filter"; do
	# shellcheck disable=SC2086
	out=$("$BIN" top $args 2>&1 </dev/null)
	r=$?
	if [ $r = 2 ] && echo "$out" | grep -q "usage: shval top"; then
		ok "usage error for 'top $args': exit 2"
	else bad "'top $args': status $r: $out"; fi
done
start_top /shval_top_test_none_$$
until_ok "a missing segment: top exits" test -s "$DIR/after"
if [ "$(cat "$DIR/status")" = 1 ] && cmp -s "$DIR/before" "$DIR/after"; then
	ok "a missing segment: status 1, terminal untouched"
else bad "a missing segment: status $(cat "$DIR/status")"; fi
until_ok "a missing segment: the message names it" \
	shows "^shval: top /shval_top_test_none_$$: "

# ---- a redis+unix:// segment --------------------------------------------
if command -v redis-server >/dev/null; then
	redis-server --port 0 --unixsocket "$DIR/sock" --unixsocketperm 700 \
		--dir "$DIR" --logfile "$DIR/redis.log" --save '' \
		--appendonly no --daemonize no </dev/null &
	RPID=$!
	for i in $(seq 100); do
		[ -S "$DIR/sock" ] && redis-cli -s "$DIR/sock" ping >/dev/null 2>&1 && break
		sleep 0.05
	done
	R="redis+unix://$DIR/sock?prefix=toptest"
	S new "$R"
	S create "$R" hits q --atomic
	S create "$R" temp d
	start_top "$R"
	until_ok "redis: the values shown" names_are 'hits temp'
	S set "$R" temp 7.5
	until_ok "redis: a change is shown (the wait on the segment's stream)" \
		shows '^temp +7\.5 '
	(while :; do "$BIN" add "$R" hits 3 >/dev/null; sleep 0.05; done) &
	BGPIDS+=($!)
	until_ok "redis: rates" rate_positive hits
	kill "${BGPIDS[@]}" 2>/dev/null
	wait "${BGPIDS[@]}" 2>/dev/null
	BGPIDS=()
	T send-keys -t top q
	after_exit "redis: q"
else
	bad "redis-server is not installed (make deps installs it)"
fi

echo "top_test: $PASS passed, $FAIL failed"
[ $FAIL = 0 ]
