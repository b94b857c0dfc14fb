#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install what rkvm needs to build and test. Idempotent and quick when done.
#   - Debian packages (pinned rustc-web, LLVM 19, Bochs, ISO tools, busybox)
#   - bindgen-cli from crates.io at a pinned version
#   - QEMU (qemu-system-x86) from bookworm-backports at a pinned version, for
#     the lab's qemu boot, without touching the system's apt sources
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

# QEMU for the lab's qemu boot, from the backports suite of the configured
# Debian mirror. A private apt configuration (the system's sources plus the
# backports suite in a sources file of our own, package lists and archives
# under the cache) resolves it; only the install itself reaches the system.
have=$(dpkg-query -W -f='${Status} ${Version}' qemu-system-x86 2>/dev/null || true)
if [ "$have" != "install ok installed $QEMU_VERSION" ]; then
	log "installing qemu-system-x86 $QEMU_VERSION from $QEMU_SUITE"
	uri=$(debian_uri) || die "no Debian mirror URI found in /etc/apt/sources.list.d or sources.list"
	apt=$RKVM_CACHE/qemu-apt
	mkdir -p "$apt/lists/partial" "$apt/archives/partial"
	{
		if [ -e /etc/apt/sources.list ]; then cat /etc/apt/sources.list; fi
		echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $QEMU_SUITE main"
	} >"$apt/sources.list"
	opts=(-o Dir::Etc::SourceList="$apt/sources.list" -o Dir::Etc::SourceParts=/etc/apt/sources.list.d
		-o Dir::State::Lists="$apt/lists" -o Dir::Cache::Archives="$apt/archives"
		-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root)
	$SUDO apt-get -q "${opts[@]}" update >/dev/null || die "apt-get update with $QEMU_SUITE failed"
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
		"${opts[@]}" -t "$QEMU_SUITE" "qemu-system-x86=$QEMU_VERSION" >/dev/null ||
		die "qemu-system-x86 $QEMU_VERSION is not installable from $QEMU_SUITE (update QEMU_VERSION in scripts/versions.env)"
fi

# linux-source-7.3 from the backports suite of the mirror already configured.
fetch_kernel_source

log "setup complete"
