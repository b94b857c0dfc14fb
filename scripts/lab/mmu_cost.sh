#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# mmu_cost.sh TAP_LOG: the "# mmu_cost <mode>: fault N cycles/page,
# pt_write N cycles/write" lines mmu_test prints, per suite (kvm_intel with
# ept=0, rkvm), as one table.
set -euo pipefail
awk '
/^rkvm-lab: suite mmu_test/ { split($3, a, "@"); who = (a[2] == "" ? "rkvm" : a[2]) }
/# mmu_cost [a-z0-9]+:/ {
	mode = $3; sub(":", "", mode)
	fault[who, mode] = $5; write[who, mode] = $8; modes[mode] = 1; whos[who] = 1
}
END {
	printf "%-8s %-16s %14s %14s\n", "mode", "hypervisor", "fault cyc/page", "pt_write cyc"
	for (m in modes) for (w in whos) if ((w, m) in fault)
		printf "%-8s %-16s %14s %14s\n", m, w, fault[w, m], write[w, m]
}' "$1"
