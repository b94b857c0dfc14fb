#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build (or reuse) the rkvm test kernel and print its build directory.
#
# The build is cached in $RKVM_CACHE/kernel/<key>, where <key> hashes the kernel
# source package version, .config.fragment and the toolchain versions; a
# completed build leaves a stamp file and is reused as is.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
. "$here/versions.env"
. "$here/lib.sh"

fetch_kernel_source
kver=$(basename "$KSRC_DEB" .deb | cut -d_ -f2)
key=$( { echo "$kver"; cat "$top/.config.fragment"; echo "$RUSTC_WEB_VERSION $LLVM_SUFFIX $BINDGEN_VERSION"; } |
	sha256sum | cut -c1-16)
src="$RKVM_CACHE/linux-$kver"
out="$RKVM_CACHE/kernel/$key"

if [ -e "$out/.rkvm-built" ]; then
	echo "$out"
	exit 0
fi

if ! [ -e "$src/.rkvm-unpacked" ]; then
	log "unpacking $(basename "$KSRC_DEB")"
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	dpkg-deb --fsys-tarfile "$KSRC_DEB" |
		tar -xO --wildcards './usr/src/linux-source-*.tar.xz' |
		tar -xJ -C "$src.tmp" --strip-components=1
	touch "$src.tmp/.rkvm-unpacked"
	mv "$src.tmp" "$src"
fi

mkdir -p "$out"
km=(make -C "$src" O="$out" "${KMAKE_ARGS[@]}")
log "configuring kernel $kver in $out"
"${km[@]}" -s rustavailable >/dev/null || die "the Rust toolchain is not usable for this kernel ('make rustavailable' failed)"
"${km[@]}" -s tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$top/.config.fragment" >/dev/null
"${km[@]}" -s olddefconfig >/dev/null

# Kconfig silently drops options whose dependencies are unmet: check each one.
bad=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=*) want=$line; opt=${line%%=*} ;;
	"# CONFIG_"*" is not set") opt=${line#\# }; opt=${opt%% *}; want="# $opt is not set" ;;
	*) continue ;;
	esac
	have=$(grep -E "^($opt=|# $opt is not set)" "$out/.config" || true)
	[ -z "$have" ] && [ "$want" = "# $opt is not set" ] && continue
	if [ "$have" != "$want" ]; then
		log "config: wanted '$want', got '${have:-<absent>}'"
		bad=1
	fi
done <"$top/.config.fragment"
[ $bad = 0 ] || die "the kernel config does not honour .config.fragment (see above)"

jobs=$(( $(nproc) + 1 ))
log "building kernel $kver (-j$jobs); a cold build takes about 6 minutes on 2 cores"
start=$(date +%s)
"${km[@]}" -j"$jobs" -s bzImage modules >"$out/build.log" 2>&1 ||
	{ tail -n 40 "$out/build.log" >&2; die "kernel build failed (log: $out/build.log)"; }
log "kernel built in $(( $(date +%s) - start )) s"
touch "$out/.rkvm-built"
echo "$out"
