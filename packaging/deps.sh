#!/usr/bin/env bash
# Install what Wharf needs to build (and, with --test, to run its test suite)
# on Debian or Ubuntu. Idempotent: packages already present are left alone.
#
# On Debian bookworm, llhttp (and oras, used by the tests) is not packaged, and
# mbedTLS is 2.28, without TLS 1.3; we add the next suite, trixie, from the same
# mirror the machine already uses, pinned so that nothing but those packages
# (llhttp, oras, and mbedTLS 3.6: libmbedtls-dev and its three libraries) comes
# from it.
set -euo pipefail

want_test=0
for a in "$@"; do
	case "$a" in
	--test) want_test=1 ;;
	-h | --help)
		echo "usage: packaging/deps.sh [--test]"
		exit 0
		;;
	*)
		echo "deps.sh: unknown argument: $a" >&2
		exit 2
		;;
	esac
done

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

build_pkgs="build-essential cmake pkg-config libuv1-dev libcurl4-openssl-dev libcjson-dev libmbedtls-dev libpsl-dev libpcre2-dev libllhttp-dev libcrypt-dev libyaml-dev"
# clang and its runtimes (libclang-rt-dev: libFuzzer and the sanitizers)
# build the fuzz targets. chromium (headless, over its DevTools protocol)
# drives the web UI's pages in tests/integration/test_ui.py. dpkg-dev
# (dpkg-shlibdeps, for cpack), groff-base and man-db (the man page), systemd
# (systemd-analyze, for the unit): the packaging tests. prometheus brings
# promtool, which checks the metrics' format (bookworm ships it inside
# prometheus; nothing needs its service running). haproxy fronts the
# sharded tier of examples/haproxy/ in test_scaleout.py and the bench's
# scaleout phase (its service is not used either).
test_pkgs="python3 curl valgrind strace openssl docker-registry skopeo podman containerd nginx-light caddy apache2-utils wrk oras uidmap fuse-overlayfs clang libclang-rt-dev chromium dpkg-dev groff-base man-db systemd prometheus haproxy"

pkgs="$build_pkgs"
[ "$want_test" = 1 ] && pkgs="$pkgs $test_pkgs"

missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
# mbedTLS 2.x (bookworm's) is installed but too old: http.tls needs 3.x.
v=$(dpkg-query -W -f='${Version}' libmbedtls-dev 2>/dev/null || true)
if [ -n "$v" ] && dpkg --compare-versions "$v" lt 3; then
	missing="$missing libmbedtls-dev"
fi
[ -z "$missing" ] && exit 0

. /etc/os-release
if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
	list=/etc/apt/sources.list.d/wharf-trixie.sources
	if [ ! -f "$list" ]; then
		# Same mirror as the machine's own bookworm entry.
		mirror=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
			grep -v security | grep -oE 'https?://[^ ]+/debian/?' | head -n1 || true)
		mirror=${mirror:-http://deb.debian.org/debian}
		$SUDO tee "$list" >/dev/null <<EOT
Types: deb
URIs: ${mirror%/}
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOT
	fi
	# Rewritten each time, so a pin file from an older deps.sh gains mbedTLS.
	$SUDO tee /etc/apt/preferences.d/wharf-trixie >/dev/null <<EOT
Package: *
Pin: release n=trixie
Pin-Priority: -1

Package: llhttp libllhttp* oras libmbedtls-dev libmbedtls21 libmbedx509-7 libmbedcrypto16
Pin: release n=trixie
Pin-Priority: 500
EOT
fi

$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
