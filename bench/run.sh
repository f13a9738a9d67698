#!/bin/sh
# bench/run.sh — what `make bench` runs: install the Boost headers when
# missing (Debian, as root), build in build-bench (Release), run the C, the
# Boost and the Python benchmarks, print the table, write bench/results.json
# and bench/results.md.
#
#   bench/run.sh [ARGS...]     ARGS go to every benchmark program, e.g.
#                              --reps 9, --min-sec 0.5, --only find, --quick
# Environment: BENCH_BUILD (build directory, default build-bench), JOBS.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
BUILD=${BENCH_BUILD:-$root/build-bench}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
PY=/usr/bin/python3

if [ ! -f /usr/include/boost/interprocess/managed_shared_memory.hpp ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "bench: installing libboost-dev (header-only Boost.Interprocess baselines)"
		(apt-get update -qq || true)
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libboost-dev >/dev/null
	else
		echo "bench: libboost-dev missing and not root: the Boost rows are skipped" >&2
	fi
fi

mkdir -p "$BUILD"
if ! { cmake -S "$root" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release &&
       cmake --build "$BUILD" -j "$JOBS"; } >"$BUILD/bench-build.log" 2>&1; then
	tail -40 "$BUILD/bench-build.log"
	echo "bench: build failed (full log: $BUILD/bench-build.log)" >&2
	exit 1
fi

frag=$(mktemp /tmp/shval-bench.XXXXXX)
trap 'rm -f "$frag"' EXIT
trap 'exit 130' INT TERM
load0=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
status=0
"$BUILD/bench/bench" --json "$frag" "$@" || status=1
if [ -x "$BUILD/bench/bench_boost" ]; then
	"$BUILD/bench/bench_boost" --json "$frag" "$@" || status=1
else
	echo "bench_boost not built (no Boost headers): find_10k and create_100k skipped"
	printf '%s\n' '{"case": "find_10k", "skipped": "Boost headers not found", "met": null}' \
		'{"case": "create_100k", "skipped": "Boost headers not found", "met": null}' >>"$frag"
fi
"$PY" "$here/bench_py.py" --build "$BUILD" --json "$frag" "$@" || status=1
# Metrics rows (issue 16): shval.metrics and shval serve vs
# prometheus_client's multiprocess mode (python3-prometheus-client).
"$PY" "$here/bench_metrics.py" --build "$BUILD" --json "$frag" "$@" || status=1
# Redis rows (issue 14): a redis-server of its own on 127.0.0.1, stopped after.
if command -v redis-server >/dev/null; then
	rdir="$BUILD/redis-bench"
	rm -rf "$rdir" && mkdir -p "$rdir"
	rport=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	redis-server --port "$rport" --bind 127.0.0.1 --dir "$rdir" --save '' \
		--appendonly no --logfile "$rdir/log" --daemonize no </dev/null &
	rpid=$!
	for i in $(seq 100); do
		redis-cli -p "$rport" ping >/dev/null 2>&1 && break
		sleep 0.05
	done
	SHVAL_BENCH_REDIS_PORT=$rport "$BUILD/bench/bench_redis" --json "$frag" "$@" || status=1
	SHVAL_BENCH_REDIS_PORT=$rport "$PY" "$here/bench_redis_py.py" --build "$BUILD" \
		--json "$frag" "$@" || status=1
	kill "$rpid"
	wait "$rpid" 2>/dev/null
	rm -rf "$rdir"
else
	echo "bench: redis-server missing (make deps installs it): Redis rows skipped" >&2
	status=1
fi
load1=$(cut -d' ' -f1-3 /proc/loadavg)

"$PY" "$here/report.py" --fragments "$frag" --out "$here/results.json" \
	--markdown "$here/results.md" --started "$start" \
	--loadavg-before "$load0" --loadavg-after "$load1" \
	--command "make bench${*:+ BENCH_ARGS=\"$*\"}"
exit $status
