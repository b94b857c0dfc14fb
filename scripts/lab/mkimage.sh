#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the lab boot media: an initramfs (busybox, rkvm.ko, kvm.ko and
# kvm-intel.ko (with irqbypass.ko, which kvm.ko needs) for comparison, the
# static selftests, scripts/lab/init) and one isolinux ISO per lab mode,
# differing only in the kernel command line.
#
# The lab boots with acpi=off: ACPI's AML interpreter and PnP scan cost about
# 45 s of emulated time per boot under KASAN and lockdep (66 s instead of
# 111 s to /init), and nothing in the lab needs ACPI; the runner ends a run at
# the init's end marker instead of waiting for an ACPI poweroff.
#   mkimage.sh KDIR OUT   ->  OUT/lab/{vmx,smp,novmx,demo,mmu}.iso
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../versions.env"
. "$here/../lib.sh"
. "$here/iso.sh"
kdir=$1
out=$2
lab=$out/lab
root=$lab/root

rm -rf "$root"
mkdir -p "$root"/{bin,lib/modules,tests,proc,sys,dev,tmp}
cp /bin/busybox "$root/bin/busybox"
install -m 755 "$here/init" "$root/init"
strip=llvm-strip$LLVM_SUFFIX
$strip --strip-debug -o "$root/lib/modules/rkvm.ko" "$out/module/rkvm.ko"
$strip --strip-debug -o "$root/lib/modules/irqbypass.ko" "$kdir/virt/lib/irqbypass.ko"
$strip --strip-debug -o "$root/lib/modules/kvm.ko" "$kdir/arch/x86/kvm/kvm.ko"
$strip --strip-debug -o "$root/lib/modules/kvm-intel.ko" "$kdir/arch/x86/kvm/kvm-intel.ko"
for t in "$out"/selftests/*; do
	[ -x "$t" ] && strip -o "$root/tests/$(basename "$t")" "$t"
done
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -1) >"$lab/initrd.gz"

for mode in vmx smp novmx demo mmu; do
	lab_iso "$kdir" "$lab/initrd.gz" "$mode" "$lab/$mode.iso"
done
log "lab media in $lab: $(du -h "$lab/initrd.gz" | cut -f1) initramfs, ISOs for vmx smp novmx demo mmu"
