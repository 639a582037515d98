# vlm: vision-language inference in C.  `make` builds build/libvlm.{a,so} and build/vlm.
# See README.md for the targets.

CC       ?= cc
CXX      ?= c++
PREFIX   ?= /usr/local
BUILD    ?= build
OPT      ?= -O2
# C++ is the tests alone: their own code is light (the library does the work), and at -O2 their compilation
# was most of the build (gtest's macros make long functions); the sanitizer build compiles them at -O0.
TEST_OPT ?= -O1
CFLAGS_BASE  = -std=c11 $(OPT) -g -Wall -Wextra -fPIC -pthread -D_GNU_SOURCE -I. -Iinclude
CXXFLAGS_BASE = -std=c++17 $(TEST_OPT) -g -Wall -Wextra -pthread -D_GNU_SOURCE -I. -Iinclude
LIBS     = -ljpeg -lpng -lcjson -lpcre2-8 -lm -lpthread -lavformat -lavcodec -lswscale -lavutil -lcurl
SAN      =

# The version, in this one place: libvlm.so.$(VERSION) with the SONAME libvlm.so.$(VERSION_MAJOR), vlm.pc,
# the man page and `vlm --version` all take it from here.
VERSION       = 0.1.0
VERSION_MAJOR = $(firstword $(subst ., ,$(VERSION)))
SONAME        = libvlm.so.$(VERSION_MAJOR)
# The git commit baked into core/version.o (`vlm --version`): "unknown" outside a git checkout of this tree.
ifeq ($(origin GIT_COMMIT),undefined)
GIT_COMMIT := $(shell if [ "$$(git -C '$(CURDIR)' rev-parse --show-toplevel 2>/dev/null)" = '$(CURDIR)' ]; then \
  c=$$(git -C '$(CURDIR)' rev-parse --short=12 HEAD 2>/dev/null) || c=unknown; \
  git -C '$(CURDIR)' diff --quiet HEAD -- 2>/dev/null || c="$$c-dirty"; echo "$$c"; else echo unknown; fi)
endif

LIB_DIRS  = core media vision text fusion caption
LIB_SRCS  = $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
CLI_SRCS  = $(wildcard samples/*.c)
TEST_SRCS = $(wildcard tests/*.cc)
BENCH_SRCS = $(wildcard bench/*.c)

LIB_OBJS  = $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
CLI_OBJS  = $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
TEST_OBJS = $(TEST_SRCS:%.cc=$(BUILD)/obj/%.o)
# vlm serve / vlm batch (server/): in the program and the tests, not in the library; HTTP by libmicrohttpd.
SERVER_OBJS = $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard server/*.c))
SERVER_LIBS = -lmicrohttpd

# ---- CUDA backend (cuda/, issue #6) --------------------------------------------------------
# `make CUDA=1` compiles cuda/*.cu with nvcc (sm_80 and sm_90 code) into libvlm, defines
# VLM_HAVE_CUDA=1 for the C/C++ code and links the CUDA runtime and cuBLAS. The default CUDA=0
# compiles cuda/cuda_stub.c instead, whose entry points report "built without CUDA".
# Use a separate BUILD folder per setting (e.g. make BUILD=build-cuda CUDA=1): objects are not
# rebuilt when only CUDA changes.
CUDA ?= 0
ifeq ($(CUDA),1)
CUDA_HOME  ?= /usr/local/cuda
NVCC       ?= $(if $(wildcard $(CUDA_HOME)/bin/nvcc),$(CUDA_HOME)/bin/nvcc,nvcc)
NVCC_FLAGS  = -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
              -Xcompiler -fPIC,-Wall,-Wextra -std=c++17 -O2 -I. -Iinclude -DVLM_HAVE_CUDA=1
LIB_OBJS      += $(patsubst %.cu,$(BUILD)/obj/%.o,$(wildcard cuda/*.cu))
CFLAGS_BASE   += -DVLM_HAVE_CUDA=1
CXXFLAGS_BASE += -DVLM_HAVE_CUDA=1
LIBS          += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++

$(BUILD)/obj/cuda/%.o: cuda/%.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -MMD -MP -c $< -o $@
else
LIB_OBJS += $(BUILD)/obj/cuda/cuda_stub.o
endif
# The CUDA backend of core/backend.h: plain C over cuda/cuda_ops.h, so it builds either way (with
# CUDA=0 the stub answers every call with "built without CUDA").
LIB_OBJS += $(BUILD)/obj/cuda/backend_cuda.o

VLM_TEST_DATA ?= $(CURDIR)/tests/data

# Debian packages needed to build and test (installed by `make deps` when missing).
DEB_PKGS = build-essential pkg-config libjpeg62-turbo-dev libpng-dev libcjson-dev libpcre2-dev \
           libgtest-dev zlib1g-dev clang libclang-rt-14-dev libavformat-dev libavcodec-dev libswscale-dev libavutil-dev libcurl4-openssl-dev \
           libmicrohttpd-dev curl python3-pip

.PHONY: FORCE all lib cli tests test unit-test cuda-test asan-test fuzz fuzz-smoke fuzz-lib demo serve-demo deps bench install clean
all: lib cli

lib: $(BUILD)/libvlm.a $(BUILD)/libvlm.so
cli: $(BUILD)/vlm

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(SAN) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/tests/%.o: tests/%.cc
	@mkdir -p $(dir $@)
	$(CXX) $(CXXFLAGS_BASE) $(SAN) $(CXXFLAGS) -DVLM_TEST_DATA='"$(VLM_TEST_DATA)"' \
	  -DVLM_BUILD_DIR='"$(abspath $(BUILD))"' -MMD -MP -c $< -o $@

# tests/test_install.cc runs `make install` from the folder it was built in, with the same settings.
$(BUILD)/obj/tests/test_install.o: CXXFLAGS += -DVLM_SOURCE_DIR='"$(CURDIR)"' -DVLM_BUILD_OPT='"$(OPT)"' \
  -DVLM_BUILD_SAN='"$(SAN)"' -DVLM_BUILD_CUDA='"$(CUDA)"'

$(BUILD)/libvlm.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The shared library: libvlm.so.$(VERSION), SONAME libvlm.so.$(VERSION_MAJOR), exporting only vlm_* symbols
# (vlm.map); libvlm.so.$(VERSION_MAJOR) and libvlm.so are symlinks to it.
$(BUILD)/libvlm.so.$(VERSION): $(LIB_OBJS) vlm.map
	$(CC) -shared $(SAN) -Wl,-soname,$(SONAME) -Wl,--version-script,vlm.map -o $@ $(LIB_OBJS) $(LIBS)

$(BUILD)/libvlm.so: $(BUILD)/libvlm.so.$(VERSION)
	ln -sf libvlm.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf libvlm.so.$(VERSION) $@

# The version and commit are compiled into core/version.o, rebuilt when either changes (the stamp file is
# rewritten only then).
$(BUILD)/version.stamp: FORCE
	@mkdir -p $(BUILD)
	@echo '$(VERSION) $(GIT_COMMIT)' | cmp -s - $@ || echo '$(VERSION) $(GIT_COMMIT)' > $@
$(BUILD)/obj/core/version.o: $(BUILD)/version.stamp
$(BUILD)/obj/core/version.o: CFLAGS += -DVLM_VERSION='"$(VERSION)"' -DVLM_GIT_COMMIT='"$(GIT_COMMIT)"'
FORCE:

$(BUILD)/vlm: $(CLI_OBJS) $(SERVER_OBJS) $(BUILD)/libvlm.a
	$(CC) $(SAN) -o $@ $(CLI_OBJS) $(SERVER_OBJS) $(BUILD)/libvlm.a $(LIBS) $(SERVER_LIBS)

$(BUILD)/vlm_tests: $(TEST_OBJS) $(SERVER_OBJS) $(BUILD)/libvlm.a
	$(CXX) $(SAN) -o $@ $(TEST_OBJS) $(SERVER_OBJS) $(BUILD)/libvlm.a -lgtest -lgtest_main $(LIBS) $(SERVER_LIBS) -lz

tests: $(BUILD)/vlm_tests $(BUILD)/vlm

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@# the server tests' clients (tests/server/*.py), from PyPI when missing
	@python3 -c 'import openai, prometheus_client' 2>/dev/null || python3 -m pip install -q openai prometheus_client \
	  || python3 -m pip install -q --break-system-packages openai prometheus_client
	@# the caption tests' subtitle parsers (tests/caption/check_subs.py), from PyPI when missing
	@python3 -c 'import srt, webvtt' 2>/dev/null || python3 -m pip install -q srt webvtt-py \
	  || python3 -m pip install -q --break-system-packages srt webvtt-py

# The unit suite, the same suite built with AddressSanitizer + UBSan, and a short run of every fuzz target.
test: deps
	$(MAKE) tests
	$(MAKE) unit-test
	@if [ -n "$(NVCC_PATH)" ]; then $(MAKE) cuda-test; else echo "cuda-test: no nvcc here, the CUDA build is not checked"; fi
	$(MAKE) asan-test
	$(MAKE) fuzz-smoke

# The CUDA build, checked by `make test` wherever nvcc is installed: library and CLI with CUDA=1,
# and the CUDA op tests (each kernel against its CPU reference op on a GPU; skipped without one).
NVCC_PATH := $(firstword $(wildcard /usr/local/cuda/bin/nvcc) $(shell command -v nvcc 2>/dev/null))
cuda-test:
	$(MAKE) BUILD=build-cuda CUDA=1 build-cuda/vlm build-cuda/vlm_cuda_tests
	build-cuda/vlm_cuda_tests

$(BUILD)/vlm_cuda_tests: $(BUILD)/obj/tests/test_cuda_ops.o $(BUILD)/obj/tests/test_cuda_backend.o $(BUILD)/libvlm.a
	$(CXX) $(SAN) -o $@ $^ -lgtest -lgtest_main $(LIBS) -lz

unit-test: tests
	VLM_BIN=$(abspath $(BUILD))/vlm $(BUILD)/vlm_tests

asan-test:
	$(MAKE) BUILD=build-asan OPT=-O1 TEST_OPT=-O0 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" tests
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 VLM_SANITIZED=1 \
	  VLM_BIN=$(abspath build-asan)/vlm build-asan/vlm_tests $(ASAN_TEST_FILTER)

# Fuzz targets: tests/fuzz/fuzz_<name>.c, each defining LLVMFuzzerTestOneInput, linked with
# libFuzzer and a clang ASan+UBSan build of the library. Seeds: tests/fuzz/corpus/<name>/.
FUZZ_CC    = clang
FUZZ_BUILD = build-fuzz
FUZZ_SRCS  = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS  = $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_SAN   = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_SECONDS ?= 300
FUZZ_SMOKE_RUNS ?= 20000

FUZZ_LIB   = $(FUZZ_BUILD)/lib/libvlm.a

# the library instrumented for coverage (a sub-make with its own BUILD folder)
fuzz-lib:
	$(MAKE) BUILD=$(FUZZ_BUILD)/lib CC=$(FUZZ_CC) OPT=-O1 SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" $(FUZZ_LIB)

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c fuzz-lib
	$(FUZZ_CC) $(CFLAGS_BASE) -O1 $(FUZZ_SAN) -fsanitize=fuzzer $< $(FUZZ_LIB) $(LIBS) -o $@

# A short, bounded run of every target (part of `make test`); `make fuzz` runs each for FUZZ_SECONDS.
# The smoke run is repeatable (fixed seed, so CI explores exactly what a local run did) and
# bounded: any one input taking over 60 s is reported as a hang, each target stops after 240 s.
FUZZ_SMOKE_SEED ?= 1
fuzz-smoke: $(FUZZ_BINS)
	@for b in $(FUZZ_BINS); do n=$$(basename $$b); mkdir -p $(FUZZ_BUILD)/corpus/$$n; \
	  echo "fuzz-smoke: $$n"; \
	  $$b -runs=$(FUZZ_SMOKE_RUNS) -seed=$(FUZZ_SMOKE_SEED) -timeout=60 -max_total_time=240 -artifact_prefix=$(FUZZ_BUILD)/ -max_len=65536 -rss_limit_mb=2048 $(FUZZ_BUILD)/corpus/$$n \
	    $$(ls -d tests/fuzz/corpus/$${n#fuzz_} 2>/dev/null) > $(FUZZ_BUILD)/$$n.log 2>&1 \
	    || { tail -n 40 $(FUZZ_BUILD)/$$n.log; exit 1; }; tail -n 1 $(FUZZ_BUILD)/$$n.log; done

fuzz: $(FUZZ_BINS)
	@for b in $(FUZZ_BINS); do n=$$(basename $$b); mkdir -p $(FUZZ_BUILD)/corpus/$$n; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS) s"; \
	  $$b -max_total_time=$(FUZZ_SECONDS) -timeout=60 -artifact_prefix=$(FUZZ_BUILD)/ -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
	    $(FUZZ_BUILD)/corpus/$$n $$(ls -d tests/fuzz/corpus/$${n#fuzz_} 2>/dev/null) > $(FUZZ_BUILD)/$$n.log 2>&1 \
	    || { tail -n 40 $(FUZZ_BUILD)/$$n.log; exit 1; }; grep -E "stat::number_of_executed_units|Done" $(FUZZ_BUILD)/$$n.log; done

DEMO_MODEL = tests/data/golden/tiny-mha
DEMO_IMAGE = tests/data/golden/inputs/case1_640x480_png/image.png
DEMO_CLIP  = tests/data/media/caption_demo.mp4
demo: deps
	$(MAKE) all
	@echo "demo: the bundled checkpoint has tiny random weights, so its answer is noise (see README for real ones)"
	$(BUILD)/vlm ask -m $(DEMO_MODEL) -i $(DEMO_IMAGE) --max-tokens 16 "Describe this image."
	@echo "demo: vlm caption on a 6 s test-pattern clip (one caption per 2 s), then its subtitles"
	$(BUILD)/vlm caption -m $(DEMO_MODEL) --max-tokens 12 --out-dir $(BUILD)/demo-captions $(DEMO_CLIP)
	cat $(BUILD)/demo-captions/caption_demo.srt

# vlm serve on the bundled checkpoint: one curl call and one openai client call, then a graceful SIGTERM.
serve-demo: deps
	$(MAKE) cli
	tests/server/serve_demo.sh $(BUILD)/vlm $(DEMO_MODEL) $(DEMO_IMAGE)

# Random Tiny-shaped weights (made once by `vlm mkmodel`), timed in bf16, q8 and q4; then vlm caption on a 60 s clip.
# LLAMA_BUILD=DIR LLAMA_GGUF=FILE (a llama.cpp build with llama-server, and the Q4_0 GGUF of bench/make_gguf.py)
# add llama-server -np 8 beside vlm serve.
bench: all
	VLM=$(BUILD)/vlm bench/run_cpu.sh tiny bf16 q8 q4
	VLM=$(BUILD)/vlm QUANT=q4 bench/run_serve.sh $(BUILD)/bench/tiny-random $(if $(LLAMA_BUILD),$(LLAMA_BUILD) $(LLAMA_GGUF))
	VLM=$(BUILD)/vlm bench/run_caption.sh q4 bf16

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/vlm $(DESTDIR)$(PREFIX)/bin/vlm
	install -m 644 $(BUILD)/libvlm.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libvlm.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libvlm.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf libvlm.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libvlm.so
	install -m 644 include/vlm.h include/vlm_status.h include/vlm_caption.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@MAJOR@|$(VERSION_MAJOR)|' \
	  -e 's|@LIBS@|$(LIBS)|' vlm.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/vlm.pc
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	sed -e 's|@VERSION@|$(VERSION)|' vlm.1.in > $(DESTDIR)$(PREFIX)/share/man/man1/vlm.1
	@case "$(DESTDIR)$(PREFIX)" in /usr|/usr/local) [ "$$(id -u)" != 0 ] || ! command -v ldconfig >/dev/null || ldconfig;; esac

clean:
	rm -rf build build-asan build-fuzz build-cuda

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# The CPU kernels may fuse multiply-adds (one rounding instead of two); the rest of
# the library keeps ISO C's strict evaluation.
$(BUILD)/obj/core/ops_cpu.o: CFLAGS += -ffp-contract=fast
