#!/bin/sh
# tests/test_exports.sh — the shared library exports exactly the functions
# declared with SHVAL_API in include/shval.h: nothing more (internals are
# hidden: the shval__ prefix with hidden visibility), nothing less (every
# declared function or variable is defined).
#
# Usage: test_exports.sh BUILD_DIR [SOURCE_DIR]
#   SOURCE_DIR defaults to the parent of this script's directory.
set -u

build=${1:?usage: test_exports.sh BUILD_DIR [SOURCE_DIR]}
src=${2:-$(cd "$(dirname "$0")/.." && pwd)}
header=$src/include/shval.h
lib=$build/libshval.so

pass=0
fail=0
ok()  { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
	echo "test_exports: $pass passed, $fail failed"
	[ "$fail" -eq 0 ]
	exit
}

if ! command -v nm >/dev/null 2>&1; then
	echo "test_exports: nm not found (binutils); skipped"
	exit 77
fi
[ -r "$header" ] || { bad "cannot read $header"; finish; }
[ -e "$lib" ] || { bad "no $lib (build first)"; finish; }

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# Declared: every "SHVAL_API <type> [*]name(" line (a declaration may span
# lines, but its name and "(" are on the SHVAL_API line), and every
# "SHVAL_API extern <type> name" line (a variable: the inline fast paths'
# per-thread state; its name ends the line or comes before ";").
{
	grep -E '^[[:space:]]*SHVAL_API[[:space:]]' "$header" |
		grep -vE '^[[:space:]]*SHVAL_API[[:space:]]+extern[[:space:]]' |
		sed -E 's/^.*[^A-Za-z0-9_]([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*\(.*$/\1/'
	grep -E '^[[:space:]]*SHVAL_API[[:space:]]+extern[[:space:]]' "$header" |
		sed -E 's/^.*[^A-Za-z0-9_]([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*;?[[:space:]]*$/\1/'
} | sort -u >"$tmp/declared"
# Exported: defined dynamic symbols of any kind (functions and data), minus
# nothing: a stray global variable or a leaked internal must show up here.
nm -D --defined-only "$lib" | awk 'NF >= 3 { print $3 }' |
	sed 's/@.*//' | sort -u >"$tmp/exported"

ndecl=$(wc -l <"$tmp/declared")
nexp=$(wc -l <"$tmp/exported")
if [ "$ndecl" -gt 0 ]; then
	ok "header declares $ndecl SHVAL_API names"
else
	bad "no SHVAL_API declarations found in $header"
fi
if [ "$nexp" -gt 0 ]; then
	ok "$lib exports $nexp symbols"
else
	bad "$lib exports no symbols"
fi

# Names that don't look like a declaration's name (extraction gone wrong).
if grep -vE '^shval_[a-z0-9_]+$' "$tmp/declared" >"$tmp/oddnames"; then
	bad "unexpected names extracted from the header: $(tr '\n' ' ' <"$tmp/oddnames")"
else
	ok "every declared name has the shval_ prefix"
fi

comm -13 "$tmp/declared" "$tmp/exported" >"$tmp/extra"
comm -23 "$tmp/declared" "$tmp/exported" >"$tmp/missing"
if [ -s "$tmp/extra" ]; then
	bad "exported but not declared with SHVAL_API:"
	sed 's/^/       /' "$tmp/extra"
else
	ok "no extra exports"
fi
if [ -s "$tmp/missing" ]; then
	bad "declared with SHVAL_API but not exported:"
	sed 's/^/       /' "$tmp/missing"
else
	ok "no missing exports"
fi
# Internals use the shval__ prefix and must never be exported, except the
# ones the header's inline fast paths call (declared SHVAL_API there).
if grep '^shval__' "$tmp/exported" | grep -qvxFf "$tmp/declared"; then
	bad "internal shval__ symbols exported"
else
	ok "no shval__ internals exported"
fi
finish
