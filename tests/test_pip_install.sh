#!/bin/sh
# tests/test_pip_install.sh — `pip install ./python` offline into a venv, all
# inside the build tree (issue 12, item 4): a copy of the sources (pip builds
# in the source directory, so the real tree is not written), a venv with the
# system's site packages (Debian's setuptools: --no-build-isolation), pip
# with --no-index (no network), then the installed module must be the one
# imported, carry the interpreter's ABI tag, and work across processes.
#
# Usage: test_pip_install.sh BUILD_DIR SOURCE_DIR PYTHON
# Exit: 0 passed, 1 failed, 77 skipped (no venv/pip/setuptools).
set -u
build=${1:?usage} src=${2:?usage} py=${3:?usage}
build=$(cd "$build" && pwd) || exit 1
"$py" -c 'import venv, ensurepip' 2>/dev/null || { echo "skipped: no python3-venv"; exit 77; }
"$py" -c 'import setuptools' 2>/dev/null || { echo "skipped: no python3-setuptools"; exit 77; }
work=$build/pip-install
rm -rf "$work" && mkdir -p "$work/src" || exit 1
trap 'rm -rf "$work"' EXIT
# the tree pip needs: python/ (package, C files, setup.py), src/, include/,
# CMakeLists.txt (the library's source list)
cp -R "$src/python" "$src/src" "$src/include" "$src/CMakeLists.txt" "$work/src/" || exit 1
rm -rf "$work/src/python/tests"
"$py" -m venv --system-site-packages "$work/venv" || exit 1
vpy=$work/venv/bin/python
"$vpy" -m pip install --no-build-isolation --no-index --no-cache-dir -q \
	"$work/src/python" >"$work/pip.log" 2>&1 || { cat "$work/pip.log"; exit 1; }
cat >"$work/check.py" <<'PY'
import multiprocessing, os, sys, sysconfig
import shval, shval._shval as ext
venv = sys.argv[1]
assert ext.__file__.startswith(venv), ext.__file__
suffix = sysconfig.get_config_var('EXT_SUFFIX')
assert ext.__file__.endswith(suffix) and 'cpython-' in suffix, (ext.__file__, suffix)
assert '.cpython-' in os.path.basename(ext.__file__)
# the library's symbols stay inside the module
import subprocess
syms = subprocess.run(['nm', '-D', '--defined-only', ext.__file__],
                      capture_output=True, text=True).stdout
assert 'shval_create' not in syms, 'libshval symbols exported'

def bump(v):
    v.add(1)

if __name__ == '__main__':
    v = shval.Value('q', 0, lock=False)
    ctx = multiprocessing.get_context('spawn')
    ps = [ctx.Process(target=bump, args=(v,)) for _ in range(2)]
    for p in ps: p.start()
    for p in ps: p.join(60)
    assert v.value == 2, v.value
    print('ok', ext.__file__)
PY
cd "$work" && env -u PYTHONPATH "$vpy" "$work/check.py" "$work/venv"
