# One entry point for building, testing and running the project.
#   make demo    profile an example program and show the result
#   make test    every test: C unit tests (gcc, then ASan+UBSan), pytest on each
#                CPython in scripts/pythons, and a bounded fuzzing run
# Both install what is missing first (scripts/setup.sh).

LIB_SRC   := $(wildcard src/libvmprof/*.c)
# The JIT log reader (decoder, query language, writer)
JITLOG_SRC := $(wildcard src/jitlog/*.c)
# The sampler's parts that need no Python (native unwinder, symbols, delivery
# schedule): tested here too.
NATIVE_SRC := src/sampler/vmp_native_unwind.c src/sampler/vmp_symbols.c src/sampler/vmp_delivery.c
CTEST_SRC := $(wildcard tests/c/*.c)
CFLAGS_COMMON := -std=gnu11 -Wall -Wextra -Werror -Isrc/libvmprof -Isrc/jitlog -Isrc/sampler -Itests/c
LDLIBS    := -lz -lunwind -ldw -ldl
FIXTURES  := $(abspath tests/data/upstream/profiles)
BUILD     := tests/c/build
FUZZ_SECONDS ?= 60
PY        ?= 3.11

.PHONY: setup install demo test test-c test-c-sanitize test-python fuzz bench clean

setup:
	scripts/setup.sh

install: setup
	scripts/install.sh

demo: install
	scripts/demo.sh

test: install test-c test-c-sanitize test-python fuzz

$(BUILD)/test_libvmprof: $(LIB_SRC) $(JITLOG_SRC) $(NATIVE_SRC) $(CTEST_SRC) $(wildcard src/libvmprof/*.h src/jitlog/*.h src/libvmprof/*.html src/sampler/vmp_native_unwind.h src/sampler/vmp_symbols.h src/sampler/vmp_delivery.h tests/c/*.h)
	@mkdir -p $(BUILD)
	gcc $(CFLAGS_COMMON) -O2 -g -o $@ $(LIB_SRC) $(JITLOG_SRC) $(NATIVE_SRC) $(CTEST_SRC) $(LDLIBS)

$(BUILD)/test_libvmprof_sanitized: $(LIB_SRC) $(JITLOG_SRC) $(NATIVE_SRC) $(CTEST_SRC) $(wildcard src/libvmprof/*.h src/jitlog/*.h src/libvmprof/*.html src/sampler/vmp_native_unwind.h src/sampler/vmp_symbols.h src/sampler/vmp_delivery.h tests/c/*.h)
	@mkdir -p $(BUILD)
	clang $(CFLAGS_COMMON) -O1 -g -fno-omit-frame-pointer \
	    -fsanitize=address,undefined -fno-sanitize-recover=all -o $@ $(LIB_SRC) $(JITLOG_SRC) $(NATIVE_SRC) $(CTEST_SRC) $(LDLIBS)

test-c: $(BUILD)/test_libvmprof
	VMP_FIXTURES=$(FIXTURES) $(BUILD)/test_libvmprof

test-c-sanitize: $(BUILD)/test_libvmprof_sanitized
	VMP_FIXTURES=$(FIXTURES) $(BUILD)/test_libvmprof_sanitized

test-python:
	scripts/test-python.sh

fuzz:
	@if [ -x fuzz/run.sh ]; then FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh; else echo "fuzz: no fuzz targets yet"; fi

bench: install
	@if [ -x bench/run.sh ]; then BENCH_NO_INSTALL=1 bench/run.sh; else echo "bench: no benchmarks yet"; fi

clean:
	rm -rf $(BUILD) build fuzz/build *.egg-info
