# SPDX-License-Identifier: GPL-2.0
# Shared helpers for rkvm's scripts. Source after versions.env.

# Everything expensive (kernel build, downloads, bindgen) lives outside the repo.
RKVM_CACHE=${RKVM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rkvm}
mkdir -p "$RKVM_CACHE"

log() { printf '[rkvm] %s\n' "$*" >&2; }
die() { printf '[rkvm] error: %s\n' "$*" >&2; exit 1; }

BINDGEN="$RKVM_CACHE/bindgen-$BINDGEN_VERSION/bin/bindgen"
export LIBCLANG_PATH=/usr/lib/llvm$LLVM_SUFFIX/lib
# The rustc that matches rust-web-src; never the rustup one first on PATH.
RUSTC=/usr/bin/rustc
RUSTDOC=/usr/bin/rustdoc
KMAKE_ARGS=(LLVM="$LLVM_SUFFIX" RUSTC="$RUSTC" RUSTDOC="$RUSTDOC" BINDGEN="$BINDGEN"
	CLIPPY_DRIVER=/usr/bin/clippy-driver RUSTFMT=/usr/bin/rustfmt)

# The configured Debian mirror's URI, read from the system apt configuration.
debian_uri() {
	local f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -e "$f" ] || continue
		uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$f")
		[ -n "$uri" ] && { echo "$uri"; return 0; }
	done
	if [ -e /etc/apt/sources.list ]; then
		uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|file):.*\/debian\/?$/) { print $i; exit } }' /etc/apt/sources.list)
		[ -n "$uri" ] && { echo "$uri"; return 0; }
	fi
	return 1
}

# Fetch the newest linux-source-$KERNEL_SERIES .deb into the cache (once) and
# set KSRC_DEB to its path. apt's system state is left untouched: a private
# sources file, list directory and cache are used.
fetch_kernel_source() {
	local dir="$RKVM_CACHE/kernel-src"
	mkdir -p "$dir"
	KSRC_DEB=$(ls -1 "$dir"/${KERNEL_SOURCE_PKG}_*.deb 2>/dev/null | sort -V | tail -n1 || true)
	[ -n "$KSRC_DEB" ] && return 0
	local uri
	uri=$(debian_uri) || die "no Debian mirror URI found in /etc/apt/sources.list.d or sources.list"
	log "fetching $KERNEL_SOURCE_PKG from $KERNEL_SUITE"
	local apt="$dir/apt"
	mkdir -p "$apt/sources.d" "$apt/lists/partial" "$apt/archives/partial"
	cat >"$apt/sources.d/rkvm.sources" <<EOS
Types: deb
URIs: $uri
Suites: $KERNEL_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
	local opts=(-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$apt/sources.d"
		-o Dir::State::Lists="$apt/lists" -o Dir::Cache::Archives="$apt/archives"
		-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Sandbox::User=root)
	apt-get -q "${opts[@]}" update >/dev/null ||
		die "apt-get update of $KERNEL_SUITE failed"
	(cd "$dir" && apt-get -q "${opts[@]}" download "$KERNEL_SOURCE_PKG" >/dev/null) ||
		die "$KERNEL_SOURCE_PKG is not available from $KERNEL_SUITE (backports may have moved on: update KERNEL_SERIES in scripts/versions.env)"
	KSRC_DEB=$(ls -1 "$dir"/${KERNEL_SOURCE_PKG}_*.deb | sort -V | tail -n1)
	log "got $(basename "$KSRC_DEB")"
}
