# SPDX-License-Identifier: Apache-2.0
# nodemesh - one entry point for building, testing and running the demo.
#
#   make            build the agent, the CLI, BPF objects and test binaries
#   make check      every test (unit, BPF, integration, fuzz smoke, one VM kernel)
#   make demo       two-node mesh demo in network namespaces (root)
#   make V=1        show full commands

.DELETE_ON_ERROR:
.SECONDARY:
.SUFFIXES:
.DEFAULT_GOAL := all

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

OUT       ?= build
PREFIX    ?= /usr/local
CC        ?= gcc
CLANG     ?= clang
BPFTOOL   ?= bpftool
PKGS      := libbpf libelf zlib openssl jansson libnl-3.0 libnl-route-3.0 yaml-0.1 libcurl libnftables libmicrohttpd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

CFLAGS    ?= -O2 -g
# SAN: sanitizer flags for a second build of the unit suites (unit-san).
CFLAGS    += $(SAN) -std=gnu11 -Wall -Wextra -Wno-unused-parameter -Wshadow \
	     -Wstrict-prototypes -Wmissing-prototypes -fno-strict-aliasing \
	     -D_GNU_SOURCE -Iinclude -I. -Iagent -I$(OUT) $(PKG_CFLAGS)
LDLIBS    += $(PKG_LIBS)

ARCH      := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
BPF_CFLAGS := -g -O2 -target bpf -D__TARGET_ARCH_$(ARCH) -Wall \
	      -Iinclude -Ibpf -I$(OUT)

# --- sources ---------------------------------------------------------------
BPF_SRCS   := $(wildcard bpf/*.bpf.c)
BPF_OBJS   := $(patsubst bpf/%.bpf.c,$(OUT)/bpf/%.bpf.o,$(BPF_SRCS))
SKELS      := $(patsubst bpf/%.bpf.c,$(OUT)/%.skel.h,$(BPF_SRCS))

# lib/: what the agent and the CLI share; depends on include/ only.
NM_LIB_SRCS := $(wildcard lib/*.c)
NM_LIB_OBJS := $(patsubst %.c,$(OUT)/%.o,$(NM_LIB_SRCS))
NM_LIB      := $(OUT)/libnm.a

AGENT_MAIN     := agent/core/main.c
AGENT_LIB_SRCS := $(filter-out $(AGENT_MAIN),$(wildcard agent/*/*.c))
AGENT_LIB_OBJS := $(patsubst %.c,$(OUT)/%.o,$(AGENT_LIB_SRCS))
AGENT_LIB      := $(OUT)/libnmagent.a

CLI_SRCS   := $(wildcard tools/*.c)
CLI_OBJS   := $(patsubst %.c,$(OUT)/%.o,$(CLI_SRCS))
# The pure agent modules `nodemesh policy` evaluates with (no sockets, maps
# or TLS): the cluster-file parser, its records, the policy parser and
# evaluator -- not policy/compile.c, which needs the state model.
CLI_PURE_SRCS := $(wildcard agent/config/*.c) agent/state/cluster.c \
		 $(filter-out agent/policy/compile.c,$(wildcard agent/policy/*.c))
CLI_PURE_OBJS := $(patsubst %.c,$(OUT)/%.o,$(CLI_PURE_SRCS))
# The development CA is the CLI's; tests that mint certificates link it too.
DEVCA_OBJ  := $(OUT)/tools/devca.o
TEST_LIBS  := $(AGENT_LIB) $(DEVCA_OBJ) $(NM_LIB)

UNIT_SRCS  := $(wildcard tests/unit/check_*.c)
UNIT_BINS  := $(patsubst tests/unit/%.c,$(OUT)/tests/unit/%,$(UNIT_SRCS))
TTOOL_SRCS := $(wildcard tests/tools/*.c)
TTOOL_BINS := $(patsubst tests/tools/%.c,$(OUT)/tests/tools/%,$(TTOOL_SRCS))
BPFT_SRCS  := $(wildcard tests/bpf/test_*.c)
BPFT_BINS  := $(patsubst tests/bpf/%.c,$(OUT)/tests/bpf/%,$(BPFT_SRCS))
FUZZ_SRCS  := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS  := $(patsubst tests/fuzz/%.c,$(OUT)/tests/fuzz/%,$(FUZZ_SRCS))

BINS := $(OUT)/nodemeshd $(OUT)/nodemesh

.PHONY: all deps check check-unit check-unit-san unit-san check-bpf check-integration check-fuzz \
	demo demo-up demo-down install clean tests fuzz vm-check bench bench-quick

all: $(BINS) tests

tests: $(UNIT_BINS) $(TTOOL_BINS) $(BPFT_BINS)

deps:
	$(Q)tools/install-deps.sh

# --- BPF ---------------------------------------------------------------------
# vmlinux.h from the running kernel's BTF; the vendored copy serves machines
# without /sys/kernel/btf/vmlinux (CO-RE relocates field offsets at load).
$(OUT)/vmlinux.h: | $(OUT)
	$(call msg,GEN,$@)
	$(Q)if [ -r /sys/kernel/btf/vmlinux ] && \
	   $(BPFTOOL) btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp 2>/dev/null; \
	then mv $@.tmp $@; else rm -f $@.tmp; cp bpf/vmlinux/vmlinux.h $@; fi

$(OUT)/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.bpf.h) include/nm_abi.h include/nm_events.h $(OUT)/vmlinux.h | $(OUT)/bpf
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@.tmp.o
	$(Q)$(BPFTOOL) gen object $@ $@.tmp.o && rm -f $@.tmp.o

$(OUT)/%.skel.h: $(OUT)/bpf/%.bpf.o
	$(call msg,SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< > $@

# --- user space ----------------------------------------------------------------
$(OUT)/%.o: %.c $(SKELS) $(wildcard include/*.h lib/*.h agent/*/*.h tools/*.h) | $(OUT)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(AGENT_LIB): $(AGENT_LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(NM_LIB): $(NM_LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# --as-needed: the agent loads libcurl itself when the Kubernetes source
# starts (agent/k8s/curl_dl.h), so it must not be a NEEDED entry.
$(OUT)/nodemeshd: $(OUT)/agent/core/main.o $(AGENT_LIB) $(NM_LIB)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) -Wl,--as-needed $^ $(LDLIBS) -o $@

$(OUT)/nodemesh: $(CLI_OBJS) $(CLI_PURE_OBJS) $(CLI_DEPS) $(NM_LIB)
	$(call msg,LINK,$@)
	$(Q)$(CC) $(CFLAGS) $^ $(LDLIBS) -o $@

$(OUT)/tests/unit/%: tests/unit/%.c $(wildcard tests/unit/*.h) $(TEST_LIBS) | $(OUT)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(CHECK_CFLAGS) $< $(TEST_LIBS) $(CHECK_LIBS) $(LDLIBS) -o $@

$(OUT)/tests/tools/%: tests/tools/%.c $(wildcard tests/lib/*.h) $(TEST_LIBS) | $(OUT)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $< $(TEST_LIBS) $(LDLIBS) -o $@

$(OUT)/tests/bpf/%: tests/bpf/%.c $(wildcard tests/unit/*.h tests/bpf/*.h tests/lib/*.h) $(TEST_LIBS) | $(OUT)
	$(call msg,CC,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) $(CHECK_CFLAGS) $< $(TEST_LIBS) $(CHECK_LIBS) $(LDLIBS) -o $@

# Fuzz targets: clang's libFuzzer with ASan/UBSan. The parsers they call are
# rebuilt with the same instrumentation, straight from their sources.
FUZZ_CFLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -D_GNU_SOURCE \
	       -Iinclude -I. -Iagent -I$(OUT) $(PKG_CFLAGS)
$(OUT)/tests/fuzz/%: tests/fuzz/%.c $(AGENT_LIB_SRCS) $(NM_LIB_SRCS) $(SKELS) | $(OUT)
	$(call msg,FUZZ,$@)
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $< $(shell sed -n 's|^// fuzz-sources: *||p' $<) $(LDLIBS) -o $@

fuzz: $(FUZZ_BINS)

$(OUT) $(OUT)/bpf:
	$(Q)mkdir -p $@

# --- tests -------------------------------------------------------------------
# Each suite prints its own results; tests/run.sh sums them and ends with
# "N passed, N failed".
# Nothing here installs packages: tools/install-deps.sh does, once.
check:
	$(Q)$(MAKE) --no-print-directory all fuzz unit-san
	$(Q)tests/run.sh all

check-unit: tests
	$(Q)tests/run.sh unit

# The unit suites again, built with ASan + UBSan into $(OUT)/san.
SAN_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	     -fno-sanitize-recover=undefined
unit-san:
	$(Q)$(MAKE) --no-print-directory OUT=$(OUT)/san SAN="$(SAN_FLAGS)" \
		$(patsubst $(OUT)/%,$(OUT)/san/%,$(UNIT_BINS))
check-unit-san: unit-san
	$(Q)tests/run.sh unit-san
check-bpf: all
	$(Q)tests/run.sh bpf
check-integration: all
	$(Q)tests/run.sh integration
check-fuzz: fuzz
	$(Q)tests/run.sh fuzz

# --- demo --------------------------------------------------------------------
demo:
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tests/integration/demo.sh run

demo-up:
	$(Q)$(MAKE) --no-print-directory all
	$(Q)tests/integration/demo.sh up

demo-down:
	$(Q)tests/integration/demo.sh down

# --- kernel matrix -------------------------------------------------------------
KERNELS ?= 5.10 6.1 6.12
vm-check:
	$(Q)$(MAKE) --no-print-directory all
	$(Q)NM_OUT=$(OUT) tests/vm/run.sh --no-build --kernels "$(KERNELS)"

# --- benchmarks (never part of check; bench/smoke.sh tests the scripts) ------
bench:
	$(Q)$(MAKE) --no-print-directory all
	$(Q)NODEMESHD=$(abspath $(OUT))/nodemeshd bench/run.sh --full

bench-quick:
	$(Q)$(MAKE) --no-print-directory all
	$(Q)NODEMESHD=$(abspath $(OUT))/nodemeshd bench/run.sh --quick

install: $(BINS)
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(OUT)/nodemeshd $(DESTDIR)$(PREFIX)/sbin/nodemeshd
	install -m 0755 $(OUT)/nodemesh $(DESTDIR)$(PREFIX)/bin/nodemesh

clean:
	$(call msg,CLEAN,$(OUT))
	$(Q)rm -rf $(OUT)
