#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make demo: build what is needed, boot the lab's demo mode on the VMX CPU
# model and stream the guest's output (kernel console and test output).
# demo.sh mmu (make lab-mmu): the shadow MMU's tests and cost benchmark on
# kvm_intel ept=0 and on rkvm, then the mmu_cost lines side by side.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/scripts/versions.env"
"$top/scripts/setup.sh"
kdir=$("$top/scripts/kernel.sh")
make -s -C "$top" KDIR="$kdir" lab >/dev/null
mode=${1:-demo}
echo "[rkvm] booting the lab (Bochs, $BOCHS_CPU_VMX): a few minutes of emulation"
python3 "$here/run.py" --follow --outdir "$top/build/lab/runs" \
	--run "$mode:$top/build/lab/$mode.iso:$BOCHS_CPU_VMX:1" --mem "$LAB_MEM_MB"
if [ "$mode" = mmu ]; then
	echo "[rkvm] guest cycles (RDTSC in the guest) per shadow page fault and per guest page-table write:"
	"$here/mmu_cost.sh" "$top/build/lab/runs/mmu/tap.log"
fi
