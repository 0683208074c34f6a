# One entry point for building, testing and running the project.
#   make demo    profile an example program and show the result
#   make test    every test: C unit tests (gcc, then ASan+UBSan), pytest on each
#                CPython in scripts/pythons, the server's tests, a bounded
#                fuzzing run, and the sdist and a wheel installed as users would
#   make serve   run vmprof-server in the foreground on 127.0.0.1:8000
#                (SERVE_LISTEN=HOST:PORT, SERVE_DATA=DIR to change them)
#   make dist    sdist and manylinux wheels in dist/, each checked (scripts/dist.sh)
# Both install what is missing first (scripts/setup.sh).
#
# Everything is compiled by meson.build (the one build description); each
# configuration below is a build folder under build/ (scripts/build.sh).

# The project's own test builds: every warning is an error here (and only here).
TEST_OPTS := -Dextension=false -Dtests=true --werror
SANITIZE  := -Doptimization=1 -Ddebug=true -Db_ndebug=false -Db_sanitize=address,undefined -Db_lundef=false \
             "-Dc_args=-fno-omit-frame-pointer -fno-sanitize-recover=all" \
             "-Dc_link_args=-fno-sanitize-recover=all"
FIXTURES  := $(abspath tests/data/upstream/profiles)
FUZZ_SECONDS ?= 60
SERVER_BIN  := build/server/vmprof-server
SERVE_DATA  ?= build/serve-data
SERVE_LISTEN ?= 127.0.0.1:8000

.PHONY: setup install demo test test-c test-c-sanitize test-python test-server test-dist \
        check-build-lists fuzz bench dist clean server server-sanitized serve

setup:
	scripts/setup.sh

install: setup server
	scripts/install.sh

# vmprof-server (src/server/), with -Werror like the project's other own builds;
# and the same with ASan+UBSan, for the server's fuzz test.  -O3 as the C
# reader it is measured against (bench, release): at -O2 the upload of the 1M
# profile took ~15% more of the server's CPU (bench/RESULTS.md, s7-compact).
server:
	scripts/build.sh server -Dextension=false -Dserver=true --werror -Dbuildtype=debugoptimized -Doptimization=3 >/dev/null

server-sanitized:
	CC=clang scripts/build.sh server-asan -Dextension=false -Dserver=true --werror $(SANITIZE) >/dev/null

serve: install
	$(SERVER_BIN) --data $(SERVE_DATA) --listen $(SERVE_LISTEN)

demo: install
	scripts/demo.sh

test: install check-build-lists test-c test-c-sanitize test-python test-server fuzz test-dist

check-build-lists:
	scripts/check-build-lists.sh

test-c:
	CC=gcc scripts/build.sh c-gcc $(TEST_OPTS) -Dbuildtype=debugoptimized >/dev/null
	VMP_FIXTURES=$(FIXTURES) VMP_TEST_LIBPYTHON="$$(scripts/libpython.sh)" build/c-gcc/test_libvmprof

test-c-sanitize:
	CC=clang scripts/build.sh c-asan $(TEST_OPTS) $(SANITIZE) >/dev/null
	VMP_FIXTURES=$(FIXTURES) VMP_TEST_LIBPYTHON="$$(scripts/libpython.sh)" build/c-asan/test_libvmprof

test-python:
	scripts/test-python.sh

test-server: server server-sanitized
	scripts/test-server.sh

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh

# The package as users get it: the sdist and a manylinux wheel, each installed
# in a fresh venv of the newest CPython (`make dist` checks every CPython), and
# the reader-only build of platforms without the sampler.
test-dist:
	scripts/dist.sh $(lastword $(shell cat scripts/pythons))
	scripts/test-reader-only.sh

bench: install
	BENCH_NO_INSTALL=1 bench/run.sh

dist: setup
	scripts/dist.sh

clean:
	rm -rf build dist fuzz/build
