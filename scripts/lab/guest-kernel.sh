#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build (or reuse) the small Linux guest that QEMU boots on rkvm in the lab
# and print the path of its bzImage. Same source as the lab kernel, x86_64
# tinyconfig plus scripts/lab/qemu-guest/config, with a built-in initramfs
# holding scripts/lab/qemu-guest/init.c. Cached in
# $RKVM_CACHE/guest-kernel/<key>; about 2 minutes cold on 2 cores.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/scripts/versions.env"
. "$top/scripts/lib.sh"
g=$here/qemu-guest

fetch_kernel_source
kver=$(basename "$KSRC_DEB" .deb | cut -d_ -f2)
src="$RKVM_CACHE/linux-$kver"
# The lab kernel's build unpacks the source; make sure it exists.
"$top/scripts/kernel.sh" >/dev/null
key=$( { echo "$kver"; cat "$g/config" "$g/init.c"; echo "$LLVM_SUFFIX"; } | sha256sum | cut -c1-16)
out="$RKVM_CACHE/guest-kernel/$key"
mkdir -p "$RKVM_CACHE/guest-kernel"
# One build at a time (make check and a developer's make lab may race).
exec 9>"$RKVM_CACHE/guest-kernel/.lock"
flock 9
if [ -e "$out/.rkvm-built" ]; then
	echo "$out/arch/x86/boot/bzImage"
	exit 0
fi
rm -rf "$out"
mkdir -p "$out/initramfs"
gcc -Os -static -nostdlib -ffreestanding -fno-tree-loop-distribute-patterns -fno-stack-protector -fno-asynchronous-unwind-tables \
	-fno-pie -no-pie -o "$out/initramfs/init" "$g/init.c"
cat >"$out/initramfs/list" <<EOL
dir /dev 755 0 0
nod /dev/console 600 0 0 c 5 1
file /init $out/initramfs/init 755 0 0
EOL
km=(make -C "$src" O="$out" LLVM="$LLVM_SUFFIX")
log "building the QEMU guest kernel in $out"
"${km[@]}" -s tinyconfig >/dev/null
{ cat "$g/config"; echo "CONFIG_INITRAMFS_SOURCE=\"$out/initramfs/list\""; } >"$out/fragment"
"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$out/fragment" >/dev/null
"${km[@]}" -s olddefconfig >/dev/null
bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*) opt=${line%%=*} ;;
	*) continue ;;
	esac
	grep -qxF "$line" "$out/.config" || { log "guest config: wanted '$line'"; bad=1; }
done <"$out/fragment"
[ $bad = 0 ] || die "the guest kernel config does not honour qemu-guest/config"
"${km[@]}" -j"$(( $(nproc) + 1 ))" -s bzImage >"$out/build.log" 2>&1 ||
	{ tail -n 40 "$out/build.log" >&2; die "guest kernel build failed (log: $out/build.log)"; }
touch "$out/.rkvm-built"
echo "$out/arch/x86/boot/bzImage"
