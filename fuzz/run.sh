#!/bin/sh
# fuzz/run.sh [seconds] — build the libFuzzer targets, write the seed corpus,
# replay the saved regressions, then fuzz each target for N seconds
# (default 60).  Prints "N passed, N failed"; exits 1 if any target failed.
# A crash, hang (-timeout), leak or OOM fails the target, and its input is
# copied to fuzz/regressions/<target>/ (fuzz_segment ones are replayed by
# tests/test_corrupt.c, case fuzz_regressions).
#
# Environment:
#   SHVAL_FUZZ_BUILD=dir      build directory (default: build-fuzz)
#   SHVAL_FUZZ_SKIP_KNOWN=1   step around bugs already reported (README.md)
#   SHVAL_FUZZ_JOBS=n         make -j
set -u
secs=${1:-60}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${SHVAL_FUZZ_BUILD:-$root/build-fuzz}
skip=${SHVAL_FUZZ_SKIP_KNOWN:-0}
jobs=${SHVAL_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}

# ---- toolchain ----
fuzzer_rt() {
	command -v clang >/dev/null 2>&1 || return 1
	printf 'int LLVMFuzzerTestOneInput(const char *d, long n){return 0;}\n' |
		clang -x c -fsanitize=fuzzer,address,undefined -o /dev/null - >/dev/null 2>&1
}
if ! fuzzer_rt; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "run.sh: installing clang and libclang-rt-14-dev"
		(apt-get update -qq || true)
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev cmake make >/dev/null
	fi
	fuzzer_rt || { echo "run.sh: clang with libFuzzer is not available" >&2; exit 2; }
fi

# ---- build ----
on=OFF; [ "$skip" = 1 ] && on=ON
cmake -S "$here" -B "$build" -DCMAKE_C_COMPILER=clang -DSHVAL_FUZZ_SKIP_KNOWN=$on >/dev/null || exit 2
cmake --build "$build" -j "$jobs" >/dev/null || { cmake --build "$build"; exit 2; }

# ---- seeds (real segments, type strings, text inputs) ----
seeds=$build/seeds
rm -rf "$seeds"
mkdir -p "$seeds/fuzz_segment" "$seeds/fuzz_type" "$seeds/fuzz_text"
"$build/mkseeds" "$seeds/fuzz_segment" "$seeds/fuzz_type" "$seeds/fuzz_text" || exit 2

# ---- run ----
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
passed=0; failed=0
for t in fuzz_segment fuzz_type fuzz_text; do
	case $t in
	fuzz_segment) maxlen=65536 ;;
	fuzz_type) maxlen=2048 ;;
	fuzz_text) maxlen=4096 ;;
	esac
	corpus=$build/corpus/$t
	art=$build/artifacts/$t
	reg=$here/regressions/$t
	mkdir -p "$corpus" "$art" "$reg"
	rm -f "$art"/*
	log=$build/$t.log
	ok=1
	# saved crashers first: each must now pass
	regs=$(find "$reg" -type f ! -name '.*' ! -name README 2>/dev/null)
	if [ -n "$regs" ]; then
		# shellcheck disable=SC2086
		if ! "$build/$t" -timeout=10 $regs >"$build/$t.regress.log" 2>&1; then
			echo "$t: a saved regression input still fails (see $build/$t.regress.log)"
			ok=0
		fi
	fi
	if ! "$build/$t" "$corpus" "$seeds/$t" -max_len=$maxlen -max_total_time="$secs" \
		-timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
		-artifact_prefix="$art/" >"$log" 2>&1; then
		ok=0
		for f in "$art"/*; do
			[ -f "$f" ] || continue
			cp "$f" "$reg/"
			echo "$t: FAILED — input saved as $reg/$(basename "$f")"
		done
		grep -m1 -E 'ERROR|SUMMARY|deadly|Timeout' "$log" | sed "s/^/$t: /"
	fi
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	n=$(find "$corpus" -type f | wc -l)
	echo "$t: ${secs}s, ${execs:-?} executions, corpus $n files ($(du -sh "$corpus" | cut -f1)), log $log"
	if [ $ok = 1 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "$passed passed, $failed failed"
[ $failed = 0 ]
