# vlm: vision-language inference in C.  `make` builds build/libvlm.{a,so} and build/vlm.
# See README.md for the targets.

CC       ?= cc
CXX      ?= c++
PREFIX   ?= /usr/local
BUILD    ?= build
OPT      ?= -O2
CFLAGS_BASE  = -std=c11 $(OPT) -g -Wall -Wextra -fPIC -pthread -D_GNU_SOURCE -I. -Iinclude
CXXFLAGS_BASE = -std=c++17 $(OPT) -g -Wall -Wextra -pthread -D_GNU_SOURCE -I. -Iinclude
LIBS     = -ljpeg -lpng -lcjson -lpcre2-8 -lm -lpthread
SAN      =

LIB_DIRS  = core media vision text fusion
LIB_SRCS  = $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c))
CLI_SRCS  = $(wildcard samples/*.c)
TEST_SRCS = $(wildcard tests/*.cc)
BENCH_SRCS = $(wildcard bench/*.c)

LIB_OBJS  = $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
CLI_OBJS  = $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
TEST_OBJS = $(TEST_SRCS:%.cc=$(BUILD)/obj/%.o)

VLM_TEST_DATA ?= $(CURDIR)/tests/data

# Debian packages needed to build and test (installed by `make deps` when missing).
DEB_PKGS = build-essential pkg-config libjpeg62-turbo-dev libpng-dev libcjson-dev libpcre2-dev \
           libgtest-dev zlib1g-dev

.PHONY: all lib cli tests test unit-test asan-test demo deps bench install clean
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

$(BUILD)/libvlm.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/libvlm.so: $(LIB_OBJS)
	$(CC) -shared $(SAN) -o $@ $^ $(LIBS)

$(BUILD)/vlm: $(CLI_OBJS) $(BUILD)/libvlm.a
	$(CC) $(SAN) -o $@ $(CLI_OBJS) $(BUILD)/libvlm.a $(LIBS)

$(BUILD)/vlm_tests: $(TEST_OBJS) $(BUILD)/libvlm.a
	$(CXX) $(SAN) -o $@ $(TEST_OBJS) $(BUILD)/libvlm.a -lgtest -lgtest_main $(LIBS) -lz

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

# The unit suite, then the same suite built with AddressSanitizer + UBSan.
test: deps
	$(MAKE) tests
	$(MAKE) unit-test
	$(MAKE) asan-test

unit-test: tests
	VLM_BIN=$(abspath $(BUILD))/vlm $(BUILD)/vlm_tests

asan-test:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" tests
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 VLM_SANITIZED=1 \
	  VLM_BIN=$(abspath build-asan)/vlm build-asan/vlm_tests $(ASAN_TEST_FILTER)

DEMO_MODEL = tests/data/golden/tiny-mha
DEMO_IMAGE = tests/data/golden/inputs/case1_640x480_png/image.png
demo: deps
	$(MAKE) all
	$(BUILD)/vlm ask -m $(DEMO_MODEL) -i $(DEMO_IMAGE) --max-tokens 16 "Describe this image."

bench: all
	@echo "benchmarks: see bench/ (added with the CPU speed work)"

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 755 $(BUILD)/vlm $(DESTDIR)$(PREFIX)/bin/vlm
	install -m 644 $(BUILD)/libvlm.a $(BUILD)/libvlm.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/vlm.h $(DESTDIR)$(PREFIX)/include/vlm.h
	sed -e 's|@PREFIX@|$(PREFIX)|' vlm.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/vlm.pc

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
