# SPDX-License-Identifier: GPL-2.0
#
# rkvm top-level Makefile.
#
#   make               build rkvm.ko against the cached lab kernel (or KDIR=...)
#   make CLIPPY=1      the same, linted by clippy
#   make check         install what is missing, build, run every test
#   make demo          boot the lab and show rkvm at work
#
# When invoked by Kbuild (KERNELRELEASE set), only the Kbuild file matters.

ifneq ($(KERNELRELEASE),)
include $(src)/Kbuild
else

SHELL := /bin/bash
TOP := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
OUT := $(TOP)/build
include $(TOP)/scripts/versions.env

# The kernel to build against: the lab kernel unless KDIR is given.
KDIR ?= $(shell $(TOP)/scripts/kernel.sh)
RKVM_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/rkvm
BINDGEN := $(RKVM_CACHE)/bindgen-$(BINDGEN_VERSION)/bin/bindgen
KMAKE := $(MAKE) -C $(KDIR) M=$(TOP) MO=$(OUT)/module LLVM=$(LLVM_SUFFIX) \
	RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc BINDGEN=$(BINDGEN) \
	CLIPPY_DRIVER=/usr/bin/clippy-driver RUSTFMT=/usr/bin/rustfmt \
	KRUSTFLAGS=-Dwarnings KCFLAGS=-Werror
ifeq ($(origin CLIPPY),command line)
KMAKE += CLIPPY=$(CLIPPY)
endif

RUSTFMT := /usr/bin/rustfmt --config-path $(TOP)/rustfmt.toml
# Crate roots: rustfmt follows their `mod` items to every other file.
RUST_SOURCES := $(TOP)/rust/rkvm.rs $(TOP)/rust/host/src/lib.rs

.PHONY: all modules setup kernel host-test fmt fmtcheck headers selftests lab \
	check demo lab-mmu lab-upstream clean

all: modules

modules:
	@mkdir -p $(OUT)/module
	$(KMAKE) modules

setup:
	$(TOP)/scripts/setup.sh

kernel:
	@$(TOP)/scripts/kernel.sh

host-test:
	cd $(TOP)/rust/host && cargo test --quiet

fmt:
	$(RUSTFMT) $(RUST_SOURCES)

fmtcheck:
	$(RUSTFMT) --check $(RUST_SOURCES)

# The kernel's uapi headers (linux/kvm.h of 7.3, not the host's older copy).
headers:
	@if [ "$$(cat $(OUT)/headers/.kdir 2>/dev/null)" != "$(KDIR)" ]; then \
		rm -rf $(OUT)/headers && \
		$(MAKE) -s -C $(KDIR) LLVM=$(LLVM_SUFFIX) headers_install \
			INSTALL_HDR_PATH=$(OUT)/headers && \
		echo "$(KDIR)" > $(OUT)/headers/.kdir; \
	fi

selftests: headers
	$(MAKE) -C $(TOP)/selftests KSRC=$(KDIR)/source HDR=$(OUT)/headers \
		OUT=$(OUT)/selftests

# Initramfs and boot ISOs for the lab (needs the module and the selftests).
lab: modules selftests
	$(TOP)/scripts/lab/mkimage.sh $(KDIR) $(OUT)

# The complete verification: setup, lint, host tests, module build (plain and
# with clippy, warnings are errors), then the lab runs. Ends with the totals.
check:
	$(TOP)/scripts/check.sh

demo:
	$(TOP)/scripts/lab/demo.sh

# The shadow MMU's tests and cost benchmark, kvm_intel ept=0 beside rkvm.
lab-mmu:
	$(TOP)/scripts/lab/demo.sh mmu

# The upstream KVM selftests (7.3 tree) on kvm_intel ept=0 and on rkvm: one
# long lab boot, then the per-test table (Documentation/rkvm/upstream-selftests.rst).
# Not part of make check.
lab-upstream: lab
	$(TOP)/scripts/lab/upstream.sh

clean:
	rm -rf $(OUT) $(TOP)/rust/host/target

endif
