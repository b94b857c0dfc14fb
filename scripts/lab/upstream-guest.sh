# SPDX-License-Identifier: GPL-2.0
# Guest side of scripts/lab/upstream.sh (make lab-upstream): sourced by the
# lab init (rkvm_lab=quick, as /quick.sh), so `say` and `kmemleak_suite`
# come from scripts/lab/init and fd 3 is ttyS1.
#
# Runs the upstream KVM selftests named in /upstream/list (binaries in
# /upstream/bin) on kvm_intel loaded with ept=0 and on rkvm with /dev/kvm made
# a node of rkvm's misc device. The list goes in rounds of /upstream/round
# tests: each round runs on kvm_intel, then the modules are swapped and it
# runs on rkvm, so a boot cut short still has both columns for the rounds it
# finished. Each round and device is one TAP suite: "ok" for exit 0,
# "ok ... # SKIP" for exit 4 (KSFT_SKIP), "not ok" for anything else, a
# timeout included. A test's output (its last lines) goes into the TAP as
# comments, and each verdict also as a machine-readable line
#   # upstream-result DEVICE TEST RC SECONDS
# that scripts/lab/upstream-table.py turns into the table.

up_timeout=$(cat /upstream/timeout)
up_round=$(cat /upstream/round)
up_devices=$(cat /upstream/devices)

# up_run DEVICE FIRST LAST: tests FIRST..LAST of the list (1-based) against
# whatever /dev/kvm is now.
up_run() {
	dev=$1 first=$2 last=$3
	say "rkvm-lab: suite upstream@$dev.$first begin"
	say "1..$((last - first + 1))"
	i=0
	# One test per line: its path, then its arguments if any.
	sed -n "${first},${last}p" /upstream/list >/upstream/round.list
	while read -r t args; do
		i=$((i + 1))
		t0=$(cut -d' ' -f1 /proc/uptime)
		# -k: SIGKILL 10 s after the SIGTERM, for a test ignoring it.
		# Each test starts in /tmp (some create files in the cwd), in a
		# process group of its own: what it leaves running (a forked
		# child whose parent died) is killed with the group afterwards.
		(cd /tmp && exec setsid timeout -s TERM -k 10 "$up_timeout" \
			"/upstream/bin/$t" $args </dev/null >/upstream/out 2>&1) &
		pid=$!
		wait $pid
		rc=$?
		kill -9 -- -$pid 2>/dev/null
		t1=$(cut -d' ' -f1 /proc/uptime)
		secs=$(awk "BEGIN { printf \"%d\", $t1 - $t0 }")
		# The end of the output holds the verdict and the reason.
		tail -n 40 /upstream/out | sed 's/^/# /' >&3
		if [ "$secs" -ge "$up_timeout" ] && { [ $rc -eq 143 ] || [ $rc -eq 137 ]; }; then
			rc=timeout
		fi
		say "# upstream-result $dev $t $rc $secs"
		case $rc in
		0) say "ok $i $t" ;;
		4) say "ok $i $t # SKIP" ;;
		*) say "not ok $i $t # rc=$rc" ;;
		esac
		rm -rf /tmp/* /upstream/out
	done </upstream/round.list
	say "rkvm-lab: suite upstream@$dev.$first end rc=0"
}

# The reference: KVM with shadow paging. Its own sysfs parameters are real.
kvm_load() {
	insmod /lib/modules/irqbypass.ko && insmod /lib/modules/kvm.ko &&
		insmod /lib/modules/kvm-intel.ko ept=0
}
kvm_unload() {
	rmmod kvm_intel kvm irqbypass
}

rkvm_load() {
	insmod /lib/modules/rkvm.ko
	# /dev/kvm as a node of rkvm's misc device (major 10, dynamic minor).
	mknod /dev/kvm c $(tr ':' ' ' </sys/class/misc/rkvm/dev)
	# The selftests read KVM's module parameters from /sys/module; rkvm
	# has none of them. A tmpfs over /sys/module provides those whose value
	# is a fact about rkvm (a file not provided makes the tests reading it
	# skip):
	#   kvm/force_emulation_prefix 0: rkvm has no forced-emulation prefix
	#     (the x86 library reads it in a constructor; without the file
	#     every x86 test skips);
	#   kvm_intel/ept N: paged guests run on rkvm's shadow MMU, not on EPT;
	#   kvm/ignore_msrs N: unknown MSRs raise #GP (abi.rst), KVM's default.
	# Values as KVM's sysfs prints them: an integer or Y/N, a newline.
	mount -t tmpfs tmpfs /sys/module
	mkdir -p /sys/module/kvm/parameters /sys/module/kvm_intel/parameters
	printf '0\n' >/sys/module/kvm/parameters/force_emulation_prefix
	printf 'N\n' >/sys/module/kvm/parameters/ignore_msrs
	printf 'N\n' >/sys/module/kvm_intel/parameters/ept
}
rkvm_unload() {
	umount /sys/module
	rm -f /dev/kvm
	rmmod rkvm
}

n=$(grep -c . /upstream/list)
first=1
while [ $first -le $n ]; do
	last=$((first + up_round - 1))
	[ $last -gt $n ] && last=$n
	for dev in $up_devices; do
		case $dev in
		kvm_intel_ept0)
			kvm_load
			up_run kvm_intel_ept0 $first $last
			kvm_unload
			;;
		rkvm)
			rkvm_load
			up_run rkvm $first $last
			rkvm_unload
			;;
		esac
	done
	first=$((last + 1))
done
kmemleak_suite
