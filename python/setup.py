"""Build of the CPython extension shval._shval for pip (see pyproject.toml).

The extension is compiled from the binding's C files and the library's own
sources (linked in, as CMake links the static library): a source tree with
../src and ../include next to this directory is required.  The module file
gets the interpreter's ABI tag (_shval.cpython-311-x86_64-linux-gnu.so).
CMake (python/CMakeLists.txt) remains the build of `make test`.
"""
import os
import platform
import re

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SRC = os.path.join(ROOT, 'src')
INCLUDE = os.path.join(ROOT, 'include')
if not os.path.isfile(os.path.join(INCLUDE, 'shval.h')):
    raise SystemExit('shval: build from the source tree (needs %s and %s)' % (SRC, INCLUDE))


def library_sources():
    """The library's sources, as listed in the top CMakeLists.txt."""
    with open(os.path.join(ROOT, 'CMakeLists.txt')) as f:
        m = re.search(r'set\(SHVAL_SOURCES\s+([^)]*)\)', f.read())
    if not m:
        raise SystemExit('shval: SHVAL_SOURCES not found in CMakeLists.txt')
    # absolute: the objects then go under build/temp.*/<path>, not ../
    return [os.path.join(ROOT, s) for s in m.group(1).split()]


BINDING = ['module.c', 'create.c', 'convert.c', 'segment.c', 'lock.c',
           'value.c', 'fields.c', 'array.c']

WARN = ['-std=gnu11', '-Wall', '-Wextra', '-Wno-missing-field-initializers']
TLS = ['-mtls-dialect=gnu2'] if platform.machine() in ('x86_64', 'AMD64') else []

setup(
    packages=['shval'],
    # The library, as CMake's shval_static: built with SHVAL_BUILDING (its
    # API visible, no inline fast paths of the header), linked into the
    # module and hidden there (--exclude-libs).
    libraries=[('shval_static', {
        'sources': library_sources(),
        'include_dirs': [INCLUDE],
        'macros': [('SHVAL_BUILDING', None), ('_GNU_SOURCE', None),
                   # src/remote_conn.c embeds its Lua functions (.incbin)
                   ('SHVAL_LUA_PATH', '"%s"' % os.path.join(SRC, 'remote.lua'))],
        'cflags': WARN + TLS + ['-fPIC', '-fvisibility=hidden'],
    })],
    ext_modules=[Extension(
        'shval._shval',
        sources=BINDING,
        include_dirs=[INCLUDE, SRC],
        extra_compile_args=WARN + ['-fvisibility=hidden'],
        libraries=['shval_static', 'hiredis', 'm'],
        extra_link_args=['-pthread', '-Wl,--exclude-libs,ALL'],
    )],
)
