#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# A quick lab boot for development: the lab media of `make lab` plus a
# script of your own, sourced by the init in place of a mode's suites (it
# may use the init's suite/output_suite/kmemleak_suite functions).
#   scripts/lab/quick.sh SCRIPT [NAME]
# e.g. a file holding
#   insmod /lib/modules/rkvm.ko; suite mmu_test mmu_test -t pae.map; rmmod rkvm
# Builds nothing: run `make lab` first. Results in build/lab/runs/NAME.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/scripts/versions.env"
. "$here/iso.sh"
script=$(realpath "$1")
name=${2:-quick}
kdir=$("$top/scripts/kernel.sh")
lab=$top/build/lab
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -a "$lab/root" "$work/root"
install -m 755 "$here/init" "$work/root/init"
install -m 644 "$script" "$work/root/quick.sh"
(cd "$work/root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"
lab_iso "$kdir" "$work/initrd.gz" quick "$lab/quick/$name.iso"
python3 "$here/run.py" --outdir "$lab/runs" \
	--run "$name:$lab/quick/$name.iso:$BOCHS_CPU_VMX:${CPUS:-1}" --mem "$LAB_MEM_MB" \
	--timeout "${TIMEOUT:-2700}"
