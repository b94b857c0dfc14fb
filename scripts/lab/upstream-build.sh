#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the x86 KVM selftests of the lab kernel's source tree, statically, into
# a cache outside the repository (the source tree stays untouched: headers and
# objects go to O=/OUTPUT= directories). Prints the directory holding the
# binaries (DIR/x86/cpuid_test, DIR/set_memory_region_test, ...).
#   scripts/lab/upstream-build.sh KDIR
# The cache is keyed by the kernel source version and reused while complete
# (a cold build takes ~2 minutes on 2 cores); RKVM_CACHE moves it.
set -euo pipefail
kdir=$1
src=$(readlink -f "$kdir/source")
key=$(basename "$src")			# e.g. linux-7.3.4-1~bpo13+1
cache=${RKVM_CACHE:-$HOME/.cache/rkvm}/upstream-selftests/$key
stamp=$cache/.complete
if [ ! -e "$stamp" ]; then
	echo "[rkvm] building the upstream KVM selftests of $key in $cache" >&2
	mkdir -p "$cache"
	# The system's uapi headers are too old for the 7.3 selftests.
	make -s -C "$src" O="$cache/hdr" headers_install \
		INSTALL_HDR_PATH="$cache/hdr/usr" >&2
	LDFLAGS=-static make -s -C "$src/tools/testing/selftests/kvm" \
		OUTPUT="$cache/out" \
		KHDR_INCLUDES="-isystem $cache/hdr/usr/include" \
		-j"$(nproc)" >&2
	touch "$stamp"
fi
echo "$cache/out"
