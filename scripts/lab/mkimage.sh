#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the lab boot media: an initramfs (busybox, rkvm.ko, kvm.ko and
# kvm-intel.ko (with irqbypass.ko, which kvm.ko needs) for comparison, the
# static selftests, scripts/lab/init) and one isolinux ISO per lab mode,
# differing only in the kernel command line. The qemu ISO also carries a
# second initramfs piece, qemu.cpio: Debian's QEMU with its libraries and
# firmware and the small Linux guest it boots (scripts/lab/guest-kernel.sh).
#
# The lab boots with acpi=off: ACPI's AML interpreter and PnP scan cost about
# 45 s of emulated time per boot under KASAN and lockdep (66 s instead of
# 111 s to /init), and nothing in the lab needs ACPI; the runner ends a run at
# the init's end marker instead of waiting for an ACPI poweroff.
#   mkimage.sh KDIR OUT   ->  OUT/lab/{vmx,smp,novmx,demo,mmu,qemu}.iso
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

# The QEMU piece: the binary, every library ldd lists (at the path ldd
# gives, the dynamic loader included), the firmware QEMU opens for the lab's
# command line (strace: the qboot BIOS and the DMA Linux loader option ROM)
# and the guest kernel. Not compressed: the lab kernel (KASAN) takes 96 s of
# emulated time to inflate and unpack it gzipped, 50 s as it is, and
# isolinux reads the larger file in well under a second.
qemu=/usr/bin/qemu-system-x86_64
[ -x "$qemu" ] || die "$qemu missing: run scripts/setup.sh"
guest=$("$here/guest-kernel.sh")
qroot=$lab/qemu-root
rm -rf "$qroot"
mkdir -p "$qroot/usr/bin" "$qroot/usr/share/qemu" "$qroot/usr/share/rkvm"
cp "$qemu" "$qroot/usr/bin/"
libs=$(ldd "$qemu")
if echo "$libs" | grep -q 'not found'; then
	die "QEMU's libraries are incomplete: $(echo "$libs" | grep 'not found' | tr -d '\t')"
fi
for lib in $(echo "$libs" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
	mkdir -p "$qroot$(dirname "$lib")"
	cp -L "$lib" "$qroot$lib"
done
for fw in qboot.rom linuxboot_dma.bin; do
	cp "/usr/share/qemu/$fw" "$qroot/usr/share/qemu/"
done
cp "$guest" "$qroot/usr/share/rkvm/guest-bzImage"
(cd "$qroot" && find . | LC_ALL=C sort | cpio -o -H newc --quiet) >"$lab/qemu.cpio"

for mode in vmx smp novmx demo mmu; do
	lab_iso "$kdir" "$lab/initrd.gz" "$mode" "$lab/$mode.iso"
done
lab_iso "$kdir" "$lab/initrd.gz" qemu "$lab/qemu.iso" "$lab/qemu.cpio"
log "lab media in $lab: $(du -h "$lab/initrd.gz" | cut -f1) initramfs," \
	"$(du -h "$lab/qemu.cpio" | cut -f1) QEMU piece (cpio, not compressed)," \
	"ISOs for vmx smp novmx demo mmu qemu"
