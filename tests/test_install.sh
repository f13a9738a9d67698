#!/bin/sh
# tests/test_install.sh — install a build into a temporary prefix and use it
# the two ways a consumer would: pkg-config and CMake's
# find_package(shval CONFIG) -> shval::shval (and shval::shval_static).
# Each consumer creates an anonymous value, adds to it, and checks the sum.
#
# Usage: test_install.sh BUILD_DIR [SOURCE_DIR]
# Exit: 0 all passed, 1 a check failed, 77 skipped (sanitizer build, no tool).
set -u

build=${1:?usage: test_install.sh BUILD_DIR [SOURCE_DIR]}
build=$(cd "$build" && pwd) || exit 1

pass=0
fail=0
ok()  { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
finish() {
	echo "test_install: $pass passed, $fail failed"
	[ "$fail" -eq 0 ]
	exit
}
skip() { echo "test_install: skipped: $*"; exit 77; }
cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt" | head -n 1; }

[ -f "$build/CMakeCache.txt" ] || { bad "$build is not a CMake build dir"; finish; }
# A sanitizer-instrumented libshval.so cannot be loaded by a plain program.
for opt in SHVAL_ASAN SHVAL_TSAN; do
	case $(cache $opt) in ON|TRUE|1|YES|on|true|yes) skip "$opt build" ;; esac
done
command -v cmake >/dev/null 2>&1 || skip "no cmake"
command -v pkg-config >/dev/null 2>&1 || skip "no pkg-config (apt-get install pkgconf)"
cc=$(cache CMAKE_C_COMPILER)
[ -n "$cc" ] && [ -x "$cc" ] || cc=cc

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

# ---- install --------------------------------------------------------------
if cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1; then
	ok "cmake --install --prefix $prefix"
else
	bad "cmake --install failed:"; sed 's/^/       /' "$tmp/install.log"; finish
fi
libdir_rel=$(cache CMAKE_INSTALL_LIBDIR)
[ -n "$libdir_rel" ] || libdir_rel=lib
libdir=$prefix/$libdir_rel
for f in include/shval.h "$libdir_rel/libshval.so" "$libdir_rel/libshval.a" \
	 "$libdir_rel/pkgconfig/shval.pc" \
	 "$libdir_rel/cmake/shval/shvalConfig.cmake" \
	 "$libdir_rel/cmake/shval/shvalConfigVersion.cmake" \
	 "$libdir_rel/cmake/shval/shvalTargets.cmake"; do
	if [ -e "$prefix/$f" ]; then ok "installed $f"; else bad "not installed: $f"; fi
done
major=$(sed -n 's/^#define SHVAL_VERSION_MAJOR[[:space:]]*\([0-9]*\).*/\1/p' "$prefix/include/shval.h")
soname=$(readelf -d "$libdir/libshval.so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [ "$soname" = "libshval.so.$major" ] && [ -e "$libdir/$soname" ]; then
	ok "SONAME $soname (= major version) installed"
else
	bad "SONAME '$soname', expected libshval.so.$major, installed"
fi

# ---- the consumer -----------------------------------------------------------
cat >"$tmp/consumer.c" <<'CEOF'
#include <shval.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	shval *v;
	int64_t n = 0;
	int r = shval_new("q", SHVAL_ATOMIC, NULL, 0, &v);
	if (r != 0) {
		fprintf(stderr, "shval_new: %s\n", shval_strerror(r));
		return 1;
	}
	for (int i = 1; i <= 10; i++)
		shval_add_i64(v, i, NULL);
	shval_get_i64(v, &n);
	shval_close(v);
	if (shval_version() != SHVAL_VERSION_HEX) {
		fprintf(stderr, "header 0x%x, library 0x%x\n",
			(unsigned)SHVAL_VERSION_HEX, shval_version());
		return 1;
	}
	printf("shval %s: sum %lld\n", shval_version_string(), (long long)n);
	return n == 55 ? 0 : 1;
}
CEOF

# resolved_in EXE: is libshval taken from the temporary prefix?
resolved_in() {
	LD_LIBRARY_PATH=${2:-} ldd "$1" 2>/dev/null | grep 'libshval' | grep -q "$prefix"
}

# ---- pkg-config ---------------------------------------------------------------
# PKG_CONFIG_LIBDIR (not _PATH): only our .pc file, never a system one.
pc() { PKG_CONFIG_LIBDIR=$libdir/pkgconfig pkg-config "$@" shval; }
if pc --exists; then
	ok "pkg-config finds shval $(pc --modversion)"
	pcinc=$(pc --variable=includedir)
	case $pcinc in
	"$prefix"/*) ok "shval.pc points into the install prefix" ;;
	*) bad "shval.pc is not relocatable: includedir=$pcinc after" \
	       "'cmake --install --prefix $prefix' (prefix fixed at configure time)"
	   pc() { PKG_CONFIG_LIBDIR=$libdir/pkgconfig pkg-config --define-prefix "$@" shval; }
	   echo "     (continuing with pkg-config --define-prefix)" ;;
	esac
	# Strict C11, warnings as errors: the public header must be clean.
	if $cc -std=c11 -pedantic -Wall -Wextra -Werror $(pc --cflags) \
		"$tmp/consumer.c" -o "$tmp/consumer_pc" $(pc --libs) \
		>"$tmp/pc.log" 2>&1; then
		ok "pkg-config consumer compiles (-std=c11 -pedantic -Werror)"
		if out=$(LD_LIBRARY_PATH=$libdir "$tmp/consumer_pc" 2>&1); then
			ok "pkg-config consumer runs: $out"
		else
			bad "pkg-config consumer failed: $out"
		fi
		if resolved_in "$tmp/consumer_pc" "$libdir"; then
			ok "pkg-config consumer loads the installed libshval.so"
		else
			bad "pkg-config consumer does not load libshval from $libdir"
		fi
	else
		bad "pkg-config consumer does not compile:"; sed 's/^/       /' "$tmp/pc.log"
	fi
	# Static linking through pkg-config needs Libs.private (-lpthread).
	if $cc -std=c11 $(pc --cflags) "$tmp/consumer.c" -o "$tmp/consumer_pc_static" \
		"$libdir/libshval.a" $(pc --static --libs-only-l | sed 's/-lshval//') \
		>"$tmp/pcs.log" 2>&1 && "$tmp/consumer_pc_static" >/dev/null 2>&1; then
		ok "static link with pkg-config --static flags runs"
	else
		bad "static link with pkg-config --static flags:"; sed 's/^/       /' "$tmp/pcs.log"
	fi
else
	bad "pkg-config does not find shval in $libdir/pkgconfig"
fi

# ---- CMake find_package ---------------------------------------------------------
mkdir -p "$tmp/cm"
cp "$tmp/consumer.c" "$tmp/cm/"
cat >"$tmp/cm/CMakeLists.txt" <<'CEOF'
cmake_minimum_required(VERSION 3.16)
project(shval_consumer C)
find_package(shval 0.1 CONFIG REQUIRED)
add_executable(consumer consumer.c)
target_link_libraries(consumer shval::shval)
add_executable(consumer_static consumer.c)
target_link_libraries(consumer_static shval::shval_static)
message(STATUS "shval_DIR=${shval_DIR} shval_VERSION=${shval_VERSION}")
CEOF
if cmake -S "$tmp/cm" -B "$tmp/cm/b" -DCMAKE_PREFIX_PATH="$prefix" \
	-DCMAKE_C_COMPILER="$cc" -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON \
	>"$tmp/cm.log" 2>&1; then
	dir=$(sed -n 's/.*shval_DIR=\([^ ]*\) .*/\1/p' "$tmp/cm.log")
	case $dir in
	"$prefix"/*) ok "find_package(shval 0.1 CONFIG) found $dir" ;;
	*) bad "find_package(shval) found $dir, not the temporary prefix" ;;
	esac
	if cmake --build "$tmp/cm/b" >>"$tmp/cm.log" 2>&1; then
		ok "CMake consumer builds (shval::shval, shval::shval_static)"
		for exe in consumer consumer_static; do
			if out=$("$tmp/cm/b/$exe" 2>&1); then
				ok "CMake $exe runs: $out"
			else
				bad "CMake $exe failed: $out"
			fi
		done
		if resolved_in "$tmp/cm/b/consumer"; then
			ok "CMake consumer loads the installed libshval.so (RPATH)"
		else
			bad "CMake consumer does not load libshval from $prefix"
		fi
	else
		bad "CMake consumer does not build:"; sed 's/^/       /' "$tmp/cm.log"
	fi
else
	bad "CMake consumer does not configure:"; sed 's/^/       /' "$tmp/cm.log"
fi

# SameMajorVersion: a request for the next major version must be refused.
next=$((major + 1))
sed "s/find_package(shval 0.1 CONFIG REQUIRED)/find_package(shval $next.0 CONFIG REQUIRED)/" \
	"$tmp/cm/CMakeLists.txt" >"$tmp/cm/CMakeLists.txt.new" &&
	mv "$tmp/cm/CMakeLists.txt.new" "$tmp/cm/CMakeLists.txt"
if cmake -S "$tmp/cm" -B "$tmp/cm/b2" -DCMAKE_PREFIX_PATH="$prefix" \
	-DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON >"$tmp/cm2.log" 2>&1; then
	bad "find_package(shval $next.0) accepted a $major.x package"
else
	ok "find_package(shval $next.0) refused (SameMajorVersion)"
fi
# ---- the Python package follows the prefix and DESTDIR (issue 12 item 5) --
if [ -d "$build/python/shval" ]; then
	pyinit=$(find "$prefix" -path '*/shval/__init__.py' | head -n 1)
	if [ -n "$pyinit" ]; then
		ok "Python package installed under the prefix: ${pyinit#$prefix/}"
		pydir=$(dirname "$(dirname "$pyinit")")
		py=$(cache Python3_EXECUTABLE)
		[ -n "$py" ] || py=python3
		if out=$(cd "$tmp" && PYTHONPATH="$pydir" "$py" -c \
			'import shval; v = shval.Value("q", 41); v.value += 1; print(shval.__file__, v.value)' 2>&1) &&
			case $out in "$pydir"/*" 42") true ;; *) false ;; esac; then
			ok "installed Python package imports from the prefix"
		else
			bad "installed Python package: $out"
		fi
	else
		bad "no shval/__init__.py under $prefix"
	fi
	dest=$tmp/destdir
	if DESTDIR=$dest cmake --install "$build" --prefix /opt/shval-test >"$tmp/dest.log" 2>&1; then
		outside=$(grep -E '^-- (Installing|Up-to-date): ' "$tmp/dest.log" | sed 's/^-- [A-Za-z-]*: //' | grep -v "^$dest/opt/shval-test/" || true)
		if [ -z "$outside" ] && [ -n "$(find "$dest/opt/shval-test" -path '*/shval/_shval*')" ]; then
			ok "DESTDIR + --prefix: everything (the Python module too) under DESTDIR/prefix"
		else
			bad "DESTDIR install wrote outside $dest/opt/shval-test: $outside"
		fi
	else
		bad "DESTDIR install failed:"; sed 's/^/       /' "$tmp/dest.log"
	fi
fi
finish
