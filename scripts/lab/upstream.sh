#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make lab-upstream: the upstream KVM selftests of the lab kernel's 7.3 tree,
# built static, run in one lab boot on kvm_intel ept=0 and then on rkvm
# (scripts/lab/upstream-guest.sh), and the per-test table of both
# (scripts/lab/upstream-table.py). See Documentation/rkvm/upstream-selftests.rst.
#   scripts/lab/upstream.sh
# Environment:
#   UPSTREAM_TESTS   run only these (space-separated names, as in upstream.list,
#                    whose arguments there they keep)
#   UPSTREAM_TIMEOUT seconds per test and device (default 120; a test still
#                    running then is killed and counts as failed)
#   UPSTREAM_ROUND   tests per round (default 8): each round runs on
#                    kvm_intel, then on rkvm
#   UPSTREAM_DEVICES the devices to run on (default "kvm_intel_ept0 rkvm");
#                    one alone gives that column, and upstream-table.py
#                    merges the logs of several runs
#   NAME             run name (default upstream): logs in build/lab/runs/NAME
# Needs the media of `make lab` (the Makefile target builds them first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/scripts/versions.env"
. "$here/iso.sh"
name=${NAME:-upstream}
per_test=${UPSTREAM_TIMEOUT:-120}
round=${UPSTREAM_ROUND:-8}
devices=${UPSTREAM_DEVICES:-kvm_intel_ept0 rkvm}
ndev=$(echo $devices | wc -w)
kdir=$("$top/scripts/kernel.sh")
bin=$("$here/upstream-build.sh" "$kdir")
lab=$top/build/lab
[ -d "$lab/root" ] || { echo "no lab media: run make lab first" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The test list without comments and blank lines (or UPSTREAM_TESTS).
if [ -n "${UPSTREAM_TESTS:-}" ]; then
	# Each named test with the arguments upstream.list gives it, if any.
	for t in $UPSTREAM_TESTS; do
		grep -m1 -E "^$t( |\$)" "$here/upstream.list" || echo "$t"
	done >"$work/list"
else
	grep -v -e '^#' -e '^[[:space:]]*$' "$here/upstream.list" >"$work/list"
fi
ntests=$(wc -l <"$work/list")

# The lab's initramfs plus the stripped test binaries, the list and the
# guest fragment (run by the init's quick mode as /quick.sh).
cp -a "$lab/root" "$work/root"
mkdir -p "$work/root/upstream/bin"
while read -r t _; do
	mkdir -p "$work/root/upstream/bin/$(dirname "$t")"
	strip -o "$work/root/upstream/bin/$t" "$bin/$t"
done <"$work/list"
cp "$work/list" "$work/root/upstream/list"
echo "$per_test" >"$work/root/upstream/timeout"
echo "$round" >"$work/root/upstream/round"
echo "$devices" >"$work/root/upstream/devices"
install -m 755 "$here/init" "$work/root/init"
install -m 644 "$here/upstream-guest.sh" "$work/root/quick.sh"
(cd "$work/root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

lab_iso "$kdir" "$work/initrd.gz" quick "$lab/quick/$name.iso"

# Bound the boot: every test of every device at its limit, plus the boot.
boot_timeout=$((ndev * ntests * (per_test + 15) + 900))
echo "[rkvm] lab-upstream: $ntests tests x $ndev device(s) ($devices), ${per_test} s each at most;" \
	"logs in build/lab/runs/$name"
# run.py fails the run on any failed test, which is expected here: the
# verdicts are the table's. Its report (kernel splats included) is kept.
mkdir -p "$lab/runs"
rc=0
python3 "$here/run.py" --outdir "$lab/runs" \
	--run "$name:$lab/quick/$name.iso:$BOCHS_CPU_VMX:1" --mem "$LAB_MEM_MB" \
	--timeout "$boot_timeout" >"$lab/runs/$name.report" 2>&1 || rc=$?
grep -v -e '^  PASS ' -e '^  SKIP ' -e '^  FAIL [^:]*/upstream@' "$lab/runs/$name.report" || true
python3 "$here/upstream-table.py" "$lab/runs/$name/tap.log" "$work/list" \
	| tee "$lab/runs/$name/table.rst"
exit 0
