#!/usr/bin/env bash
# Runs the README's two commands (scripts/demo.sh, scripts/test.sh) in a fresh, minimal
# Debian 12 root made with debootstrap, because a machine that once had a package installed
# hides a missing one (libdnnl-dev's OpenCL dependency did exactly that).
#
#   sudo bash scripts/fresh_check.sh            # needs root (debootstrap, chroot, mounts)
#
# The checkout's tracked and untracked-but-not-ignored files are copied in (not build/), and
# ../shared (or $VITBATCH_SHARED) is bind-mounted read-only beside it. The debootstrap
# tarball is cached in .fresh-cache/ (git-ignored), so later runs skip the base download;
# the packages setup.sh installs are downloaded every time, as on a new machine.
# Not run in CI: it takes ten minutes or more and downloads about a gigabyte.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
shared="$(cd "${VITBATCH_SHARED:-$root/../shared}" && pwd)"
suite=bookworm
[ "$(id -u)" -eq 0 ] || { echo "fresh_check: needs root (debootstrap, chroot, mount)" >&2; exit 2; }

# The archive this machine's apt uses (one-line sources.list or deb822 .sources).
mirror="$(grep -hoE '^deb +(\[[^]]*\] +)?https?://[^ ]+' /etc/apt/sources.list 2>/dev/null | awk '{print $NF}' | head -n1 || true)"
[ -n "$mirror" ] || mirror="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)"
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
echo "fresh_check: Debian $suite from $mirror" >&2

command -v debootstrap >/dev/null || {
  apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >&2
}

cache="$root/.fresh-cache"
tarball="$cache/$suite-minbase.tgz"
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  echo "fresh_check: caching the base system in $tarball" >&2
  debootstrap --variant=minbase --make-tarball="$tarball.part" "$suite" "$(mktemp -d)" "$mirror" >&2
  mv "$tarball.part" "$tarball"
fi

chroot_dir="$(mktemp -d /tmp/vitbatch-fresh.XXXXXX)"
chmod 755 "$chroot_dir"  # it is the root's "/": users other than root (munge) must traverse it
cleanup() {
  # Daemons a package's postinst started inside the root (munge's): nothing may outlive it.
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$chroot_dir" ] && kill -9 "${p#/proc/}" 2>/dev/null
  done
  for m in work/shared dev/pts dev proc sys; do
    mountpoint -q "$chroot_dir/$m" && umount -l "$chroot_dir/$m"
  done
  rm -rf --one-file-system "$chroot_dir"
}
trap cleanup EXIT

start=$(date +%s)
debootstrap --variant=minbase --unpack-tarball="$tarball" "$suite" "$chroot_dir" "$mirror" >&2
# The same archive lines a new machine of this kind would have (updates, security).
cp -a /etc/apt/sources.list.d/. "$chroot_dir/etc/apt/sources.list.d/" 2>/dev/null || true
[ -f /etc/apt/sources.list ] && cp /etc/apt/sources.list "$chroot_dir/etc/apt/sources.list"
cp /etc/resolv.conf "$chroot_dir/etc/resolv.conf"
# This kind of machine reaches PyPI through an egress proxy whose CA it trusts (its
# /usr/local/share/ca-certificates and pip.conf): a new machine of the kind has them too, so
# the root gets them, as it gets resolv.conf. They are the network's, not the project's.
if [ -d /usr/local/share/ca-certificates ]; then
  mkdir -p "$chroot_dir/usr/local/share/ca-certificates" "$chroot_dir/etc/ssl/certs"
  cp -a /usr/local/share/ca-certificates/. "$chroot_dir/usr/local/share/ca-certificates/"
  [ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$chroot_dir/etc/ssl/certs/"
fi
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$chroot_dir/etc/pip.conf"
mount -t proc proc "$chroot_dir/proc"
mount --rbind /sys "$chroot_dir/sys"
mount --bind /dev "$chroot_dir/dev"
mount --bind /dev/pts "$chroot_dir/dev/pts"
mkdir -p "$chroot_dir/work/vitbatch" "$chroot_dir/work/shared"
mount --bind "$shared" "$chroot_dir/work/shared"
mount -o remount,bind,ro "$chroot_dir/work/shared"
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
  xargs -0 -I{} cp --parents -P {} "$chroot_dir/work/vitbatch/")

run_in_root() {  # a login-like environment: nothing of this machine's PATH or variables
  chroot "$chroot_dir" /usr/bin/env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 bash -c "cd /work/vitbatch && $1"
}
t0=$(date +%s)
run_in_root "bash scripts/demo.sh" >"$cache/demo.csv"
t1=$(date +%s)
run_in_root "bash scripts/test.sh"
t2=$(date +%s)
rows=$(($(wc -l <"$cache/demo.csv") - 1))
echo "fresh_check: passed. base system $((t0 - start)) s, demo.sh $((t1 - t0)) s ($rows rows), test.sh $((t2 - t1)) s" >&2
