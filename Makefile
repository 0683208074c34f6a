# One entry point for building, testing and running the project.
#   make demo    profile an example program and show the result
#   make test    every test: C unit tests (gcc, then ASan+UBSan), pytest on each
#                CPython in scripts/pythons, the server's tests, and a bounded
#                fuzzing run
#   make serve   run vmprof-server in the foreground on 127.0.0.1:8000
# Both install what is missing first (scripts/setup.sh).

LIB_SRC   := $(wildcard src/libvmprof/*.c)
# The JIT log reader (decoder, query language, writer)
JITLOG_SRC := $(wildcard src/jitlog/*.c)
# The sampler's parts that need no Python (native unwinder, symbols, delivery
# schedule): tested here too.
NATIVE_SRC := src/sampler/vmp_native_unwind.c src/sampler/vmp_symbols.c src/sampler/vmp_delivery.c
CTEST_SRC := $(wildcard tests/c/*.c)
CFLAGS_COMMON := -std=gnu11 -Wall -Wextra -Werror -Isrc/libvmprof -Isrc/jitlog -Isrc/sampler -Itests/c
LDLIBS    := -lz -lunwind -ldw -lelf -ldl
FIXTURES  := $(abspath tests/data/upstream/profiles)
BUILD     := tests/c/build
FUZZ_SECONDS ?= 60
PY        ?= 3.11

.PHONY: setup install demo test test-c test-c-sanitize test-python test-server fuzz bench clean \
        server serve

# vmprof-server (src/server/): links the library's sources directly and
# finds its own dependencies with pkg-config.
SERVER_SRC  := $(wildcard src/server/*.c)
SERVER_BIN  := build/server/vmprof-server
SERVER_PKGS := libmicrohttpd jansson libsodium sqlite3 libpq
SERVE_DATA  ?= build/serve-data

setup:
	scripts/setup.sh

install: setup server
	scripts/install.sh

server: $(SERVER_BIN)

$(SERVER_BIN): $(SERVER_SRC) $(wildcard src/server/*.h) $(LIB_SRC) $(wildcard src/libvmprof/*.h src/libvmprof/*.html)
	@mkdir -p $(dir $@)
	gcc $(CFLAGS_COMMON) -Wno-format-truncation -Isrc/server -O2 -g -pthread \
	    -DSRV_DEFAULT_WEB_DIR='"$(abspath web/dist)"' \
	    -DSRV_DEFAULT_SPEEDSCOPE_DIR='"$(abspath web/node_modules/speedscope/dist/release)"' \
	    $(shell pkg-config --cflags $(SERVER_PKGS)) \
	    -o $@ $(SERVER_SRC) $(LIB_SRC) $(shell pkg-config --libs $(SERVER_PKGS)) -lz

# The same with ASan+UBSan, for the server's fuzz test.
$(SERVER_BIN)-sanitized: $(SERVER_SRC) $(wildcard src/server/*.h) $(LIB_SRC) $(wildcard src/libvmprof/*.h src/libvmprof/*.html)
	@mkdir -p $(dir $@)
	clang $(CFLAGS_COMMON) -Isrc/server -O1 -g -pthread \
	    -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
	    $(shell pkg-config --cflags $(SERVER_PKGS)) \
	    -o $@ $(SERVER_SRC) $(LIB_SRC) $(shell pkg-config --libs $(SERVER_PKGS)) -lz

serve: install
	$(SERVER_BIN) --data $(SERVE_DATA)

demo: install
	scripts/demo.sh

test: install test-c test-c-sanitize test-python test-server fuzz

$(BUILD)/test_libvmprof: $(LIB_SRC) $(JITLOG_SRC) $(NATIVE_SRC) $(CTEST_SRC) $(wildcard src/libvmprof/*.h src/jitlog/*.h src/libvmprof/*.html web/src/flamegraph.js src/sampler/vmp_native_unwind.h src/sampler/vmp_symbols.h src/sampler/vmp_delivery.h tests/c/*.h)
	@mkdir -p $(BUILD)
	gcc $(CFLAGS_COMMON) -O2 -g -o $@ $(LIB_SRC) $(JITLOG_SRC) $(NATIVE_SRC) $(CTEST_SRC) $(LDLIBS)

$(BUILD)/test_libvmprof_sanitized: $(LIB_SRC) $(JITLOG_SRC) $(NATIVE_SRC) $(CTEST_SRC) $(wildcard src/libvmprof/*.h src/jitlog/*.h src/libvmprof/*.html web/src/flamegraph.js src/sampler/vmp_native_unwind.h src/sampler/vmp_symbols.h src/sampler/vmp_delivery.h tests/c/*.h)
	@mkdir -p $(BUILD)
	clang $(CFLAGS_COMMON) -O1 -g -fno-omit-frame-pointer \
	    -fsanitize=address,undefined -fno-sanitize-recover=all -o $@ $(LIB_SRC) $(JITLOG_SRC) $(NATIVE_SRC) $(CTEST_SRC) $(LDLIBS)

test-c: $(BUILD)/test_libvmprof
	VMP_FIXTURES=$(FIXTURES) $(BUILD)/test_libvmprof

test-c-sanitize: $(BUILD)/test_libvmprof_sanitized
	VMP_FIXTURES=$(FIXTURES) $(BUILD)/test_libvmprof_sanitized

test-python:
	scripts/test-python.sh

test-server: $(SERVER_BIN) $(SERVER_BIN)-sanitized
	scripts/test-server.sh

fuzz:
	@if [ -x fuzz/run.sh ]; then FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh; else echo "fuzz: no fuzz targets yet"; fi

bench: install
	@if [ -x bench/run.sh ]; then BENCH_NO_INSTALL=1 bench/run.sh; else echo "bench: no benchmarks yet"; fi

clean:
	rm -rf $(BUILD) build fuzz/build *.egg-info
