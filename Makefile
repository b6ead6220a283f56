# The user's entry point. Every target installs what it needs first
# (deploy/setup.sh is idempotent: a second run takes about a second).
#
#   make demo        set up, start the local stack, run the loop and show it
#   make demo-down   stop the demo's services, its webhook receiver and the stack
#   make test        set up, build (warnings are errors), start the stack, run every
#                    CI-sized test, then the unit and mock tests again under ASan+UBSan,
#                    then each fuzz target for 10 s
#   make soak        the same tests at full size, the whole suite under sanitizers,
#                    each fuzz target for 10 minutes
#   make fuzz        build the libFuzzer targets (clang) into build-fuzz/ and run each
#                    for FUZZ_SECONDS (10); tests/fuzz/README.md
#   make build       compile into build/
#   make install     binaries, systemd units, examples into PREFIX (/usr/local; DESTDIR= too)
#   make bench       benchmarks (bench/run.sh); figures go to bench/RESULTS.md
#   make stack-up | stack-down | stack-status
#   make format | format-check | clean

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
export MLOPS_STATE_DIR ?= $(CURDIR)/.state
BUILD ?= $(CURDIR)/build
ASAN_BUILD ?= $(CURDIR)/build-asan
FUZZ_BUILD ?= $(CURDIR)/build-fuzz
FUZZ_SECONDS ?= 10
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local
CTEST_JOBS ?= 2
C_SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find common services cli tests bench -name '*.[ch]')

.PHONY: help setup setup-apt build build-asan build-fuzz fuzz install test soak demo demo-down \
        bench stack-up stack-down stack-status format format-check clean

help:
	@sed -n '2,17p' Makefile | sed 's/^# \{0,1\}//'

setup:
	@deploy/setup.sh all

setup-apt:
	@deploy/setup.sh apt

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMLOPS_WERROR=ON

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Sanitize -DMLOPS_WERROR=ON

# clang for libFuzzer (tests/fuzz/README.md)
$(FUZZ_BUILD)/build.ninja:
	cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Sanitize \
	  -DMLOPS_FUZZ=ON -DMLOPS_WERROR=ON

build: setup-apt $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

build-asan: setup-apt $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS)

install: build
	DESTDIR="$(DESTDIR)" cmake --install $(BUILD) --prefix $(PREFIX)
	@echo "installed into $(DESTDIR)$(PREFIX); systemd: deploy/systemd/README.md"

build-fuzz: setup-apt $(FUZZ_BUILD)/build.ninja
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_targets

fuzz: build-fuzz
	FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh

stack-up: setup
	@deploy/stack.sh up

stack-down:
	@deploy/stack.sh down

stack-status:
	@deploy/stack.sh status

test: setup build build-asan stack-up
	@echo "== tests (unit, kafka_mock, integration, lifecycle, contract) =="
	cd $(BUILD) && ctest -j $(CTEST_JOBS) --output-on-failure
	@echo "== unit and kafka_mock tests under ASan+UBSan =="
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest -j $(CTEST_JOBS) -L 'unit|kafka_mock' --output-on-failure
	@echo "== fuzz smoke ($(FUZZ_SECONDS) s per target) =="
	@$(MAKE) --no-print-directory fuzz
	@echo "== format =="
	@$(MAKE) --no-print-directory format-check
	@echo "make test: all passed"

soak: setup build build-asan stack-up
	cd $(BUILD) && MLOPS_TEST_SCALE=soak ctest -j $(CTEST_JOBS) --output-on-failure
	cd $(ASAN_BUILD) && MLOPS_TEST_SCALE=soak ASAN_OPTIONS=detect_leaks=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest -j $(CTEST_JOBS) --output-on-failure
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=600

demo: setup build stack-up
	@deploy/demo.sh

demo-down:
	@deploy/demo-down.sh

bench: setup build stack-up
	@BENCH_BUILD_DIR=$(BUILD) bench/run.sh

format:
	clang-format -i $(C_SOURCES)

format-check:
	@clang-format --dry-run --Werror $(C_SOURCES) && echo "format: ok"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
