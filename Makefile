# shval — top-level convenience targets.  The build itself is CMake.
#   make run    build and run the demo
#   make test   install what the tests need (Debian, as root), build with
#               warnings as errors, run the whole suite through ctest
#   make mutants  mutation check of the suite (RELIABILITY.md, "Mutants")
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

DEB_PACKAGES = cmake gcc make python3 python3-dev python3-pytest jq util-linux valgrind pkgconf python3-pytest-timeout python3-numpy clang-format libhiredis-dev redis-server python3-redis libmicrohttpd-dev prometheus python3-venv python3-setuptools python3-pip tmux python3-prometheus-client

.PHONY: all build run test deps deps-build install clean asan pyasan tsan valgrind sanitize soak fuzz bench mutants

all: build

# What building alone needs (make run, make build on a fresh machine).
BUILD_PACKAGES = cmake gcc make pkgconf libhiredis-dev libmicrohttpd-dev
deps-build:
	@missing=""; for p in $(BUILD_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "please install:$$missing"; exit 1; fi; \
	fi

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "please install:$$missing (as root: make deps)"; exit 1; fi; \
	fi

build: deps-build
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/demo

test: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHVAL_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 300

# Sanitizer runs of the whole C suite (issue: reliability).  The timeout
# multiplier gives slow instrumented runs room; the Python binding is left
# out (CPython itself is not built with the sanitizers).
SAN_CTEST = ctest --output-on-failure -j $(JOBS) --timeout 900 -E '^python'

asan: deps
	cmake -S . -B build-asan -DSHVAL_ASAN=ON -DSHVAL_PYTHON=OFF -DSHVAL_WERROR=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-asan -j $(JOBS)
	cd build-asan && SHVAL_TEST_TIMEOUT_MULTIPLIER=4 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $(SAN_CTEST)

# The Python suite (local and Redis segments) against an ASan+UBSan build
# of the binding and the library it links.  CPython itself is not
# instrumented: libasan is preloaded, PYTHONMALLOC=malloc hands Python's
# objects to ASan's allocator (a use after free of an object is seen), and
# leaks are not reported (the interpreter keeps its own allocations until
# exit).  The interpreter's exit is checked too: pytest's status is
# printed last (a crash after the summary is a failure).
PYASAN_ENV = LD_PRELOAD=$$(gcc -print-file-name=libasan.so) \
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 PYTHONMALLOC=malloc \
  PYTHONPATH=$(CURDIR)/build-pyasan/python SHVAL_TEST_KINDS=local,redis \
  SHVAL_LIBRARY=$(CURDIR)/build-pyasan/libshval.so \
  SHVAL_CLI=$(CURDIR)/build-pyasan/shval SHVAL_TEST_TIMEOUT_MULTIPLIER=4

pyasan: deps
	cmake -S . -B build-pyasan -DSHVAL_ASAN=ON -DSHVAL_PYTHON=ON -DSHVAL_WERROR=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-pyasan -j $(JOBS) --target shval shval_cli shval_python shval_python_pkg
	cd python/tests && $(PYASAN_ENV) timeout 1800 /usr/bin/python3 -m pytest -q -p no:cacheprovider .; \
	  s=$$?; echo "pyasan: pytest exit status $$s"; exit $$s

tsan: deps
	cmake -S . -B build-tsan -DSHVAL_TSAN=ON -DSHVAL_PYTHON=OFF -DSHVAL_WERROR=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && SHVAL_TEST_TIMEOUT_MULTIPLIER=4 \
	  TSAN_OPTIONS="suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=1 report_signal_unsafe=0" \
	  $(SAN_CTEST) -E '^python|test_corrupt|test_fields|test_locks\.(tid_reuse|segment_closed_while|shared_lock_section_committed)|test_lock_stale\.(owner_died|file_copied)|test_hostile\.lock_word_waiters_bit_without_owner'
# (test_corrupt and test_fields open damaged segment images, whose mutexes
#  TSan has never seen initialised ("use of an invalid mutex"); four kinds
#  of test_locks cases hand a lock word from one process to another behind
#  TSan's back (a reused tid, a dead owner's tid, a copied file, a word
#  with only the waiters bit: test_hostile), which its
#  per-process mutex bookkeeping cannot follow (its deadlock detector
#  aborts), and TSan builds block plainly in pthread_mutex_lock (see
#  shval__mutex_acquire); two test_locks cases lock a mutex through one
#  mapping of its file and unlock it through another, which TSan, keying
#  mutexes by address, takes for an unlock of an unlocked mutex.  Hostile
#  input, deaths and those two run under ASan.)

# valgrind memcheck over the single-process unit tests.
VALGRIND_TESTS = test_basic test_type test_text test_threads
valgrind: deps build
	@command -v valgrind >/dev/null || apt-get install -y -qq valgrind
	@fail=0; pass=0; for t in $(VALGRIND_TESTS); do \
	  [ -x $(BUILD)/$$t ] || continue; \
	  if SHVAL_TEST_TIMEOUT_MULTIPLIER=10 valgrind -q --error-exitcode=99 --leak-check=full \
	       --trace-children=yes --child-silent-after-fork=no $(BUILD)/$$t >/dev/null 2>$(BUILD)/$$t.valgrind; then \
	    pass=$$((pass+1)); else fail=$$((fail+1)); echo "valgrind: $$t failed:"; tail -30 $(BUILD)/$$t.valgrind; fi; \
	done; echo "valgrind: $$pass passed, $$fail failed"; [ $$fail = 0 ]

sanitize: asan pyasan tsan valgrind

# Benchmarks (not tests): installs libboost-dev when missing (as root),
# builds build-bench (Release), runs bench/, prints the table, writes
# bench/results.json.  BENCH_ARGS e.g. "--reps 9 --min-sec 0.5 --only find"
bench: deps
	sh bench/run.sh $(BENCH_ARGS)

# libFuzzer targets, FUZZ_SECONDS each (fuzz/README.md).
FUZZ_SECONDS ?= 60
fuzz:
	fuzz/run.sh $(FUZZ_SECONDS)

# Soak: 8 processes mixing every operation, random SIGKILLs and restarts,
# invariants on every read, exact totals at the end.  SOAK_SECONDS=600 ...
SOAK_SECONDS ?= 60
soak: build
	./$(BUILD)/tests/soak $(SOAK_SECONDS)

# Mutation check: small source mutations, one per promise of shval.h /
# RELIABILITY.md, each built in build-mutants/ and run against its tests;
# fails if a mutant survives (RELIABILITY.md, "Mutants").  Not part of
# `make test` (about 10 minutes).  MUTANTS_ARGS e.g. "--only ID" "--full".
MUTANTS_ARGS ?=
mutants: deps
	python3 mutants/run --jobs $(JOBS) $(MUTANTS_ARGS)

# make install [PREFIX=/opt/shval] [DESTDIR=/stage]: the library, headers,
# CLI and the Python package (under PREFIX/lib/python3.X/... when PREFIX
# is given, else the interpreter's /usr/local dist-packages).
install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) $(if $(PREFIX),--prefix "$(PREFIX)")

clean:
	rm -rf $(BUILD)
