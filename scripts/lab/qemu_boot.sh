#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# qemu_boot.sh TAP_LOG: the QEMU boot times of the qemu run ("# qemu_boot: S
# s" in suites qemu_boot@kvm_intel_ept0 and qemu_boot), side by side on one
# line, with rkvm's time over kvm_intel's. A boot whose guest never printed
# its marker shows as failed, with QEMU's exit status.
set -euo pipefail
awk '
/^rkvm-lab: suite qemu_boot[@ ]/ && / begin/ {
	split($3, sn, "@"); who = (sn[2] == "" ? "rkvm" : sn[2]); order[++n] = who; next
}
/^rkvm-lab: suite / { who = ""; next }
who == "" { next }
/^# qemu_boot: / { secs[who] = $3 }
/^(not )?ok 1 qemu_exit_status/ { rc[who] = ($1 == "ok" ? 0 : $0); sub(/.*# /, "", rc[who]) }
/^ok 3 guest_marker/ { marker[who] = 1 }
END {
	ref = "kvm_intel_ept0"
	line = "qemu_boot (lab kernel clock, QEMU start to exit):"
	for (i = 1; i <= n; i++) {
		w = order[i]
		if (!(w in secs))
			v = "did not finish"
		else if (marker[w] && rc[w] == 0)
			v = secs[w] " s"
		else
			v = "failed after " secs[w] " s (" (rc[w] == 0 ? "no marker" : rc[w]) ")"
		line = line (i > 1 ? "," : "") " " w " " v
	}
	if (marker[ref] && marker["rkvm"] && rc[ref] == 0 && rc["rkvm"] == 0 && secs[ref] > 0)
		line = line sprintf(", rkvm/%s %.2f", ref, secs["rkvm"] / secs[ref])
	if (n == 0)
		line = line " no qemu_boot suite in the log"
	print line
}' "$1"
