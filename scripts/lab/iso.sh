# SPDX-License-Identifier: GPL-2.0
# Sourced by the lab scripts: the one way a lab boot ISO is made.

# lab_iso KDIR INITRD MODE ISO [EXTRA]: an isolinux ISO booting KDIR's bzImage
# with INITRD and the lab command line for init mode MODE (rkvm_lab=MODE).
# EXTRA, a second initramfs piece (the qemu boot's QEMU, mkimage.sh), is
# loaded after INITRD as /qemu.cpio: the kernel unpacks both into one rootfs.
lab_iso() {
	local kdir=$1 initrd=$2 mode=$3 iso=$4 extra=${5:-} d initrds=/initrd.gz
	d=$(mktemp -d)
	cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$d/"
	cp "$kdir/arch/x86/boot/bzImage" "$d/"
	cp "$initrd" "$d/initrd.gz"
	if [ -n "$extra" ]; then
		cp "$extra" "$d/qemu.cpio"
		initrds=/initrd.gz,/qemu.cpio
	fi
	cat >"$d/isolinux.cfg" <<EOC
DEFAULT lab
LABEL lab
  KERNEL /bzImage
  APPEND console=ttyS0 initrd=$initrds acpi=off rkvm_lab=$mode
EOC
	mkdir -p "$(dirname "$iso")"
	xorriso -as mkisofs -quiet -o "$iso" -b isolinux.bin -c boot.cat \
		-no-emul-boot -boot-load-size 4 -boot-info-table "$d" 2>/dev/null
	rm -rf "$d"
}
