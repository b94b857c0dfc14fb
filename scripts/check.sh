#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# make check: install what is missing, build everything, run every test.
#
# Every check leaves one "PASS|FAIL|SKIP <name>" line in build/check/results;
# the run ends with the totals as "N passed, N failed, N skipped" and exits
# non-zero if anything failed. Logs of each step are in build/check/.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
. "$here/versions.env"
cd "$top"

out=$top/build/check
mkdir -p "$out"
results=$out/results
: >"$results"
t0=$(date +%s)

stamp() { printf '[check %4ds] %s\n' $(( $(date +%s) - t0 )) "$*"; }
record() { echo "$1 $2" >>"$results"; stamp "$1 $2"; }

# step NAME CMD...: a check that passes when CMD exits 0 and prints no
# compiler or linker warning.
step() {
	local name=$1; shift
	local log=$out/${name//\//_}.log
	if "$@" >"$log" 2>&1 && ! grep -qiE '(^|[^a-z_-])warning' "$log"; then
		record PASS "$name"
	else
		record FAIL "$name"
		tail -n 30 "$log" | sed 's/^/    /'
	fi
}

finish() {
	local p f s
	p=$(grep -c '^PASS' "$results")
	f=$(grep -c '^FAIL' "$results")
	s=$(grep -c '^SKIP' "$results")
	echo
	if [ "$f" -gt 0 ]; then
		echo "Failed checks:"
		grep '^FAIL' "$results" | sed 's/^FAIL /  /'
	fi
	stamp "done"
	echo "$p passed, $f failed, $s skipped"
	[ "$f" -eq 0 ]
	exit
}

# Prerequisites: without them nothing else can run.
stamp "setup (packages, bindgen, kernel source)"
if ! "$here/setup.sh"; then
	record FAIL setup
	finish
fi
stamp "test kernel (cached when unchanged)"
if ! kdir=$("$here/kernel.sh"); then
	record FAIL kernel
	finish
fi
record PASS kernel

# Host unit tests of the pure logic: one result line per test.
stamp "host unit tests"
(cd rust/host && cargo test -- --test-threads=1) >"$out/host-tests.log" 2>&1
host_rc=$?
sed -nE 's/^test (.*) \.\.\. (ok|FAILED|ignored)$/\2 host\/\1/p' "$out/host-tests.log" |
	sed -e 's/^ok /PASS /' -e 's/^FAILED /FAIL /' -e 's/^ignored /SKIP /' >>"$results"
if [ $host_rc -ne 0 ] || ! grep -q '^PASS host/' "$results"; then
	record FAIL "host/cargo-test"
	tail -n 30 "$out/host-tests.log" | sed 's/^/    /'
fi

# The lab runner's own judgement (splat scan, TAP parsing).
(cd scripts/lab && python3 -m unittest -v test_run) >"$out/runner-tests.log" 2>&1
runner_rc=$?
sed -nE 's/^test_[a-z_]+ \(test_run\.([A-Za-z]+\.test_[a-z_]+)\) \.\.\. (ok|FAIL|ERROR)$/\2 host\/runner.\1/p' \
	"$out/runner-tests.log" |
	sed -e 's/^ok /PASS /' -e 's/^FAIL /FAIL /' -e 's/^ERROR /FAIL /' >>"$results"
if [ $runner_rc -ne 0 ] || ! grep -q '^PASS host/runner' "$results"; then
	record FAIL "host/runner-unittest"
	tail -n 30 "$out/runner-tests.log" | sed 's/^/    /'
fi
stamp "host unit tests: $(grep -c '^PASS host/' "$results") passed, $(grep -c '^FAIL host/' "$results") failed"

step lint/rustfmt make -s fmtcheck
step build/clippy make KDIR="$kdir" CLIPPY=1 modules
step build/rkvm.ko make KDIR="$kdir" modules
step build/selftests make KDIR="$kdir" selftests
step build/lab-media make KDIR="$kdir" lab

if ! [ -e build/lab/vmx.iso ]; then
	record FAIL "lab: no boot media"
	finish
fi
# Most suites run on one emulated CPU (a 2-CPU Bochs guest is ~2.5x
# slower); the smp run keeps the tests that need vCPUs on several CPUs.
# The vmx boot takes ~20 min since mmu_test runs on kvm_intel ept=0 and on
# rkvm there, lapic_test on both: each boot may take 55 min. Two host cores: vmx and smp run
# together in one runner; beside them, a second runner boots novmx (short)
# and then qemu (QEMU booting a Linux guest on kvm_intel ept=0 and on
# rkvm), so no more than three emulators share the two cores at any time.
stamp "lab: booting VMX ($BOCHS_CPU_VMX x1) and SMP ($BOCHS_CPU_VMX x2) guests, beside them no-VMX ($BOCHS_CPU_NOVMX) then QEMU ($BOCHS_CPU_VMX x1)"
: >"$out/results-side"
(
	python3 scripts/lab/run.py --outdir build/lab/runs --results "$out/results-side" \
		--run "novmx:build/lab/novmx.iso:$BOCHS_CPU_NOVMX:1" \
		--mem "$LAB_MEM_MB" --timeout 3300
	python3 scripts/lab/run.py --outdir build/lab/runs --results "$out/results-side" \
		--run "qemu:build/lab/qemu.iso:$BOCHS_CPU_VMX:1" \
		--mem "$LAB_MEM_MB" --timeout 3300
) >"$out/lab-side.log" 2>&1 &
side=$!
python3 scripts/lab/run.py --outdir build/lab/runs --results "$results" \
	--run "vmx:build/lab/vmx.iso:$BOCHS_CPU_VMX:1" \
	--run "smp:build/lab/smp.iso:$BOCHS_CPU_VMX:2" \
	--mem "$LAB_MEM_MB" --timeout 3300 | tee "$out/lab.log"
wait "$side"
tee -a "$out/lab.log" <"$out/lab-side.log"
cat "$out/results-side" >>"$results"
if [ -e build/lab/runs/vmx/tap.log ]; then
	stamp "shadow MMU cost, guest cycles (from the vmx run; make lab-mmu reruns it alone):"
	scripts/lab/mmu_cost.sh build/lab/runs/vmx/tap.log | tee -a "$out/lab.log" || true
fi
if [ -e build/lab/runs/smp/tap.log ]; then
	stamp "invalidation benchmarks, kvm_intel ept=0 and rkvm (from the smp run):"
	scripts/lab/inval_bench.sh build/lab/runs/smp/tap.log | tee -a "$out/lab.log" || true
fi
if [ -e build/lab/runs/qemu/tap.log ]; then
	stamp "QEMU boot times, kvm_intel ept=0 and rkvm (from the qemu run):"
	scripts/lab/qemu_boot.sh build/lab/runs/qemu/tap.log | tee -a "$out/lab.log" || true
fi
finish
