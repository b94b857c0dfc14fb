#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install what rkvm needs to build and test. Idempotent and quick when done.
#   - Debian packages (pinned rustc-web, LLVM 19, Bochs, ISO tools, busybox)
#   - bindgen-cli from crates.io at a pinned version
#   - the linux-source-7.3 .deb, fetched into the cache without touching the
#     system's apt sources
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.env"
. "$here/lib.sh"

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo

pkgs=(
	"rustc-web=$RUSTC_WEB_VERSION" "rust-web-src=$RUSTC_WEB_VERSION"
	"libstd-rust-web-dev=$RUSTC_WEB_VERSION" "libstd-rust-web-1.85=$RUSTC_WEB_VERSION"
	"rust-web-clippy=$RUSTC_WEB_VERSION" "rustfmt-web=$RUSTC_WEB_VERSION"
	"clang$LLVM_SUFFIX" "lld$LLVM_SUFFIX" "llvm$LLVM_SUFFIX" "libclang$LLVM_SUFFIX-dev"
	bc flex bison libelf-dev libssl-dev cpio xz-utils make gcc libc6-dev
	bochs bochs-term bochsbios vgabios
	isolinux syslinux syslinux-common xorriso busybox-static
	rsync
)

missing=()
for p in "${pkgs[@]}"; do
	name=${p%%=*}
	want=${p#*=}
	have=$(dpkg-query -W -f='${Status} ${Version}' "$name" 2>/dev/null || true)
	case "$have" in
	"install ok installed "*)
		if [ "$name" != "$p" ] && [ "${have##* }" != "$want" ]; then
			missing+=("$p")
		fi ;;
	*) missing+=("$p") ;;
	esac
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing Debian packages: ${missing[*]}"
	$SUDO apt-get update -q >/dev/null
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --allow-downgrades \
		--no-install-recommends "${missing[@]}" >/dev/null
fi

# bindgen-cli, pinned, installed into the cache (not into the system).
bindgen_root="$RKVM_CACHE/bindgen-$BINDGEN_VERSION"
if ! [ -x "$bindgen_root/bin/bindgen" ]; then
	log "installing bindgen-cli $BINDGEN_VERSION"
	cargo install -q bindgen-cli --version "$BINDGEN_VERSION" --locked --root "$bindgen_root"
fi

# linux-source-7.3 from the backports suite of the mirror already configured.
fetch_kernel_source

log "setup complete"
