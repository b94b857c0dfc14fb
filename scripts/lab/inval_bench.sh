#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# inval_bench.sh TAP_LOG: the "# inval_bench <what> <params>: <name> <value>
# <unit>, ..." lines inval_test prints, per suite (kvm_intel with ept=0,
# rkvm), side by side: one row per benchmark, parameter and measure, with
# rkvm's value over kvm_intel's.
set -euo pipefail
awk '
/^rkvm-lab: suite inval_test/ { split($3, sn, "@"); who = (sn[2] == "" ? "rkvm" : sn[2]); whos[who] = 1 }
/# inval_bench / {
	line = $0
	sub(/^.*# inval_bench /, "", line)
	key = line; sub(/:.*/, "", key)
	rest = line; sub(/^[^:]*: */, "", rest)
	if (!(key in seen)) { seen[key] = 1; keys[++nkeys] = key }
	n = split(rest, f, /, */)
	for (i = 1; i <= n; i++) {
		split(f[i], w, " ")
		m = key SUBSEP w[1] " (" w[3] ")"
		if (!(m in mseen)) { mseen[m] = 1; mlist[key] = mlist[key] SUBSEP w[1] " (" w[3] ")" }
		val[who, m] = w[2]
	}
}
END {
	ref = "kvm_intel_ept0"
	printf "%-34s %-26s %14s %14s %8s\n", "benchmark", "measure", ref, "rkvm", "rkvm/ref"
	for (k = 1; k <= nkeys; k++) {
		key = keys[k]
		n = split(substr(mlist[key], 2), ms, SUBSEP)
		for (i = 1; i <= n; i++) {
			m = key SUBSEP ms[i]
			a = ((ref, m) in val) ? val[ref, m] : "-"
			b = (("rkvm", m) in val) ? val["rkvm", m] : "-"
			r = (a != "-" && b != "-" && a + 0 > 0) ? sprintf("%.2f", b / a) : "-"
			printf "%-34s %-26s %14s %14s %8s\n", key, ms[i], a, b, r
		}
	}
}' "$1"
