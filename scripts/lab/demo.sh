#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make demo: build what is needed, boot the lab's demo mode on the VMX CPU
# model and stream the guest's output (kernel console and test output).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/scripts/versions.env"
"$top/scripts/setup.sh"
kdir=$("$top/scripts/kernel.sh")
make -s -C "$top" KDIR="$kdir" lab >/dev/null
echo "[rkvm] booting the lab (Bochs, $BOCHS_CPU_VMX): a few minutes of emulation"
exec python3 "$here/run.py" --follow --outdir "$top/build/lab/runs" \
	--run "demo:$top/build/lab/demo.iso:$BOCHS_CPU_VMX:1" --mem "$LAB_MEM_MB"
