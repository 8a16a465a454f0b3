#!/bin/sh
# Installs the startup-lock executable for this machine from a release made by
# `deno task release`: downloads it and SHA256SUMS, checks the checksum, installs
# it as startup-lock, and prints its --version. Nothing is installed when the
# checksum does not match.
#
#   sh install.sh [BASE_URL]
#
# BASE_URL     where the release's files are; else $STARTUP_LOCK_RELEASE_URL,
#              else the placeholder below (replace it with your own host)
# STARTUP_LOCK_INSTALL_DIR  where to install; default /usr/local/bin
#
# Needs curl or wget, and sha256sum or shasum (macOS).
set -eu

DEFAULT_RELEASE_URL=https://example.com/startup-lock/releases/v0.1.0

base_url=${1:-${STARTUP_LOCK_RELEASE_URL:-$DEFAULT_RELEASE_URL}}
base_url=${base_url%/}
install_dir=${STARTUP_LOCK_INSTALL_DIR:-/usr/local/bin}

fail() {
  echo "install.sh: $*" >&2
  exit 1
}

case $(uname -s) in
  Linux) os=unknown-linux-gnu ;;
  Darwin) os=apple-darwin ;;
  *) fail "no release for $(uname -s): there are executables for Linux and macOS" ;;
esac
case $(uname -m) in
  x86_64 | amd64) arch=x86_64 ;;
  aarch64 | arm64) arch=aarch64 ;;
  *) fail "no release for $(uname -m): there are executables for x86_64 and arm64" ;;
esac
# A shell under Rosetta reports x86_64 on an Apple silicon Mac: take the native executable.
if [ "$os" = apple-darwin ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || :)" = 1 ]; then
  arch=aarch64
fi
name=startup-lock-$arch-$os

if command -v curl >/dev/null 2>&1; then
  download() { curl -fsSL -o "$2" "$1"; }
elif command -v wget >/dev/null 2>&1; then
  download() { wget -q -O "$2" "$1"; }
else
  fail "needs curl or wget to download"
fi
if command -v sha256sum >/dev/null 2>&1; then
  check() { sha256sum -c "$1"; }
elif command -v shasum >/dev/null 2>&1; then
  check() { shasum -a 256 -c "$1"; }
else
  fail "needs sha256sum or shasum to check the download"
fi

new=
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -z "$new" ] || rm -f "$new"' EXIT
trap 'exit 1' HUP INT TERM

echo "Downloading $base_url/$name" >&2
download "$base_url/$name" "$tmp/$name" || fail "cannot download $base_url/$name"
download "$base_url/SHA256SUMS" "$tmp/SHA256SUMS" || fail "cannot download $base_url/SHA256SUMS"

# Only this file's line: the other executables are not here to check.
awk -v name="$name" '$2 == name || $2 == "*" name' "$tmp/SHA256SUMS" >"$tmp/$name.sha256"
[ -s "$tmp/$name.sha256" ] || fail "$base_url/SHA256SUMS has no line for $name"
if ! result=$(cd "$tmp" && check "$name.sha256" 2>&1); then
  echo "$result" >&2
  fail "checksum mismatch: $name is not the file SHA256SUMS names; nothing installed"
fi

[ -d "$install_dir" ] || mkdir -p "$install_dir" || fail "cannot create $install_dir"
[ -w "$install_dir" ] ||
  fail "cannot write to $install_dir: run as root, or set STARTUP_LOCK_INSTALL_DIR"
# Copied next to the target, tried, then renamed over it: a running startup-lock
# keeps its file, and a failed install leaves the old one in place.
new=$install_dir/.startup-lock.new.$$
cp "$tmp/$name" "$new"
chmod 755 "$new"
if ! version=$("$new" --version 2>&1); then
  echo "$version" >&2
  fail "$name does not run on this machine (the Linux executables need glibc); nothing installed"
fi
mv -f "$new" "$install_dir/startup-lock"
echo "Installed $install_dir/startup-lock" >&2
echo "$version"
