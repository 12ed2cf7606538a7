# persona — the two commands a newcomer needs: `make run` and `make test`.
BUILD ?= build
ASAN_BUILD ?= build-asan
GENERATOR := Ninja
JOBS ?= $(shell nproc)
# Lets ccache reuse objects across checkouts in different folders.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1
CMAKE_FLAGS ?=

.PHONY: all deps build run cluster test unit integration e2e bench bench-realtime crash-test asan tsan clean format

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD)/build.ninja: CMakeLists.txt
	@cmake -S . -B $(BUILD) -G $(GENERATOR) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null

build: deps $(BUILD)/build.ninja
	@cmake --build $(BUILD) -j $(JOBS)

# Starts the server on embedded defaults: web UI at http://127.0.0.1:8080.
run: build
	./$(BUILD)/src/persona serve

# A local cluster: PostgreSQL, Redis, three nodes and HAProxy on :8080 and
# :1883 (scripts/cluster.sh); Ctrl-C stops it all.
cluster: build
	PERSONA_BIN=$(CURDIR)/$(BUILD)/src/persona ./scripts/cluster.sh

# Unit, integration and browser end-to-end tests.
test: build
	cd $(BUILD) && ctest --output-on-failure -j 1

unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

integration: build
	cd $(BUILD) && ctest --output-on-failure -L integration

e2e: build
	cd $(BUILD) && ctest --output-on-failure -L e2e

bench: build
	./bench/run_steps.sh
	./bench/run_async.sh
	./bench/run_llm.sh
	./bench/run_overload.sh
	./bench/run_postgres.sh
	./bench/run_cluster.sh
	./bench/run_ai.sh
	./bench/run_tracing.sh
	python3 bench/run_extraction.py

# The crash test's long mode (not in CI): kill -9 after 100,000 acknowledged
# writes, on RocksDB and on PostgreSQL (restarted half-way through).
crash-test: build
	cd tests/integration && PERSONA_BIN=$(CURDIR)/$(BUILD)/src/persona CRASH_TARGET_ACKS=100000 \
	  python3 -m unittest test_crash -v
	cd tests/integration && PERSONA_BIN=$(CURDIR)/$(BUILD)/src/persona CRASH_TARGET_ACKS=100000 \
	  PERSONA_TEST_STORE=postgres CRASH_PG_RESTART=1 python3 -m unittest test_crash -v

# MQTT fan-out, latency, idle memory and resume: persona vs Mosquitto vs NATS.
bench-realtime: build
	./bench/run_realtime.sh

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer.
asan: deps
	@cmake -S . -B $(ASAN_BUILD) -G $(GENERATOR) -DCMAKE_BUILD_TYPE=Debug -DPERSONA_WITH_ASAN=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j 1 -LE e2e

tsan: deps
	@cmake -S . -B build-tsan -G $(GENERATOR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPERSONA_WITH_TSAN=ON >/dev/null
	@cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS="suppressions=$(CURDIR)/scripts/tsan.supp halt_on_error=1 exitcode=66" \
	  ctest --output-on-failure -j 1 -LE e2e

format:
	@clang-format -i $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-tsan
