#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make demo: build what is needed, boot the lab's demo mode on the VMX CPU
# model and stream the guest's output (kernel console and test output), then
# boot the qemu ISO and stream QEMU booting a small Linux guest on kvm_intel
# ept=0 and on rkvm, and print both boot times.
# demo.sh mmu (make lab-mmu): the shadow MMU's tests and cost benchmark on
# kvm_intel ept=0 and on rkvm, then the mmu_cost lines side by side.
# demo.sh qemu: only the QEMU boots.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/scripts/versions.env"
"$top/scripts/setup.sh"
kdir=$("$top/scripts/kernel.sh")
make -s -C "$top" KDIR="$kdir" lab >/dev/null
mode=${1:-demo}

# boot MODE: boot MODE's ISO on the VMX CPU model, streaming its output.
boot() {
	python3 "$here/run.py" --follow --outdir "$top/build/lab/runs" \
		--run "$1:$top/build/lab/$1.iso:$BOCHS_CPU_VMX:1" --mem "$LAB_MEM_MB"
}

rc=0
if [ "$mode" != qemu ]; then
	echo "[rkvm] booting the lab (Bochs, $BOCHS_CPU_VMX): a few minutes of emulation"
	boot "$mode" || rc=$?
fi
if [ "$mode" = mmu ]; then
	echo "[rkvm] guest cycles (RDTSC in the guest) per shadow page fault and per guest page-table write:"
	"$here/mmu_cost.sh" "$top/build/lab/runs/mmu/tap.log"
fi
if [ "$mode" = demo ] || [ "$mode" = qemu ]; then
	echo "[rkvm] booting the lab's qemu ISO: QEMU boots a small Linux guest on kvm_intel ept=0, then on rkvm (about 10 minutes)"
	boot qemu || rc=$?
	"$here/qemu_boot.sh" "$top/build/lab/runs/qemu/tap.log"
fi
exit $rc
