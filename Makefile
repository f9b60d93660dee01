# The front door: `make run` and `make test`. CMake does the real work.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
MAKEFLAGS += --no-print-directory

.PHONY: all deps build run test sanitize portable avx2 fuzz hostile bench bench-c clean install rock

all: build

deps:
	@sh scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

# Installs missing Debian packages, builds, and runs the main job. The build's
# output goes to $(BUILD)/build.log: on success only its warnings are shown, on
# failure all of it (scripts/quiet-build.sh).
run: deps
	@sh scripts/quiet-build.sh $(BUILD)/build.log $(MAKE) build
	$(BUILD)/dropnet scripts/train.lua $(ARGS)

# Every test (C and Lua) through ctest; the last line counts them all.
test: deps build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer.
sanitize: deps
	$(MAKE) test BUILD=build-sanitize CMAKE_FLAGS="-DDN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"

# The whole suite on a build for any x86-64 (no -march=native): the kernels
# are then chosen at run time from what the CPU has.
portable: deps
	$(MAKE) test BUILD=build-portable CMAKE_FLAGS="-DDN_NATIVE=OFF"

# The whole suite as on an AVX2 machine without AVX-512 (AMD Zen 3): a build
# for Haswell's instruction set (AVX2 + FMA; the runtime's AVX2 code paths)
# with dropnet's AVX2 sgemm kernel chosen.
# Skipped, saying so, on a CPU without AVX2 and FMA, where that build cannot run.
avx2: deps
	@if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then \
	  DROPNET_SGEMM=avx2 $(MAKE) test BUILD=build-avx2 CMAKE_FLAGS="-DDN_NATIVE=OFF -DCMAKE_C_FLAGS=-march=haswell"; \
	else echo "make avx2: skipped: this CPU has no AVX2 and FMA, which a -march=haswell build needs"; fi

# libFuzzer harnesses of the file readers (clang, ASan + UBSan): each runs
# FUZZ_SECONDS, one after another; fails on any finding. See tests/fuzz/run.sh.
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60

$(FUZZ_BUILD)/CMakeCache.txt:
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=Release -DDN_FUZZ=ON -DBUILD_TESTING=OFF

fuzz: deps $(FUZZ_BUILD)/CMakeCache.txt
	cmake --build $(FUZZ_BUILD) --target fuzzers -j $(JOBS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh $(FUZZ_BUILD)

# A long hostile-input campaign (tests/hostile): make hostile [HOSTILE_CALLS=200000]
# [HOSTILE_SEED=1] [BUILD=build-sanitize after make sanitize]; make hostile REPLAY=N
# runs call N of the last campaign again, alone.
HOSTILE_CALLS ?= 200000
HOSTILE_SEED ?= 1
hostile: build
	DN_HOSTILE_CALLS=$(HOSTILE_CALLS) sh $(BUILD)/hostile/hostile.sh $(if $(REPLAY),--replay $(REPLAY)) --seed $(HOSTILE_SEED)

# Every benchmark side by side with PyTorch, the machine's roofs and the targets of
# issues 11 and 13 (scripts/bench/all.sh; BENCH_ARGS="--quick", "--pairs 5", "--no-cnn", ...).
bench: build
	sh scripts/bench/all.sh --dropnet $(BUILD)/dropnet $(BENCH_ARGS)

# The C benchmarks alone: matmul against OpenBLAS, dropout, the roofs.
bench-c: build
	$(BUILD)/bench_matmul
	$(BUILD)/bench_dropout
	$(BUILD)/bench_roofs
	$(BUILD)/bench_gemm_roof
	$(BUILD)/dropnet scripts/bench/matmul.lua

install: build
	cmake --install $(BUILD) $(if $(PREFIX),--prefix $(PREFIX))

# A LuaRocks source rock of the working tree, made offline (scripts/make-rock.sh):
# $(BUILD)/rock/dropnet-scm-1.src.rock, for `luarocks install` on any machine
# with the Debian packages of `make deps`.
rock:
	@sh scripts/make-rock.sh . $(BUILD)/rock > /dev/null
	@echo "wrote $(BUILD)/rock/dropnet-scm-1.src.rock; install it with:"
	@echo "  luarocks --lua-version=5.4 install --local $(BUILD)/rock/dropnet-scm-1.src.rock"

clean:
	rm -rf $(BUILD) build-sanitize build-portable $(FUZZ_BUILD)
