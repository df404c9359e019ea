#!/usr/bin/env bash
# scripts/vm/image.sh: build (or reuse) the cached Debian bookworm base image
# the VM test boots: a minbase debootstrap with systemd 252, udev, a kernel
# and what the scenario needs, configured to boot straight into the oneshot
# unit execgate-vm-test.service (it mounts the payload disk /dev/vdb and runs
# its scenario.sh), and packed as an ext4 image.
#
# Output, in $VM_CACHE/base-KEY/: base.img (raw ext4, the root fs),
# vmlinuz, initrd.img, packages.txt. KEY hashes this script (which holds the
# package list and every configuration step), so any change rebuilds; an
# existing complete entry is reused as is. The entry is built in a temporary
# directory next to it and renamed into place, so an interrupted build leaves
# nothing that looks finished. Prints the path of the entry on stdout (last
# line); progress and timings go to stderr.
set -euo pipefail

VM_CACHE=${VM_CACHE:-/var/cache/execgate-vm}
MIRROR=${VM_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
IMG_SIZE=3G
# What the scenario needs, and nothing more:
#   systemd systemd-sysv dbus udev   a real init (udev provides dev-ttyS*.device)
#   linux-image-amd64                the kernel and its initrd (initramfs-tools)
#   libseccomp2                      execgated links it
#   git                              the flow incident replay (git status/checkout)
# Deliberately absent: procps (so no /bin/kill: `systemctl reload` must work
# without it), python3 (the scenario checks JSON with grep and does its
# syscall tests with a static helper built on the host), networking.
PACKAGES=(systemd systemd-sysv dbus udev linux-image-amd64 libseccomp2 git)

log() { printf 'image: %s\n' "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

self=$(readlink -f "${BASH_SOURCE[0]}")
key=$( { cat "$self"; printf '%s\n' "$SUITE" "$MIRROR" "${PACKAGES[@]}"; } | sha256sum | cut -c1-16)
entry=$VM_CACHE/base-$key

if [ -f "$entry/base.img" ] && [ -f "$entry/vmlinuz" ] && [ -f "$entry/initrd.img" ]; then
  log "cached base image $entry (key $key)"
  echo "$entry"
  exit 0
fi

[ "$(id -u)" = 0 ] || { log "building the image needs root (debootstrap, ownership in the ext4 image)"; exit 1; }
for t in debootstrap mkfs.ext4; do
  command -v "$t" >/dev/null || { log "missing $t (make deps installs it)"; exit 1; }
done

mkdir -p "$VM_CACHE"
# One builder at a time per cache (a second waits, then finds the entry).
exec 9>"$VM_CACHE/.lock"
flock 9
if [ -f "$entry/base.img" ]; then log "built meanwhile: $entry"; echo "$entry"; exit 0; fi

tmp=$(mktemp -d "$VM_CACHE/.build-$key.XXXXXX")
root=$tmp/root
cleanup() {
  for m in proc sys dev/pts dev; do mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m" || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

t0=$(now)
log "debootstrap $SUITE (minbase + ${PACKAGES[*]}) from $MIRROR"
inc=$(IFS=,; echo "${PACKAGES[*]}")
# Downloaded .debs are kept between builds (only the download is reused; a
# new key still installs from scratch).
mkdir -p "$VM_CACHE/debs"
debootstrap --variant=minbase --include="$inc" --cache-dir="$VM_CACHE/debs" \
  "$SUITE" "$root" "$MIRROR" > "$tmp/debootstrap.log" 2>&1 || {
  tail -30 "$tmp/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
t_deb=$(since "$t0")
log "debootstrap done in ${t_deb}s"

t1=$(now)
# --- configuration -----------------------------------------------------
echo execgate-vm > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\texecgate-vm\n::1\tlocalhost\n' > "$root/etc/hosts"
printf '/dev/vda\t/\text4\trw,errors=remount-ro\t0\t1\n' > "$root/etc/fstab"
: > "$root/etc/resolv.conf"
# A fixed machine id: no first-boot handling; the journal dir has a known name.
[ -s "$root/etc/machine-id" ] || echo 4e1b0f0c8a0e4b1c9d2f00000000e9a7 > "$root/etc/machine-id"

# No logins, no timers, no network: the boot goes straight to the test.
ln -sf /lib/systemd/system/multi-user.target "$root/etc/systemd/system/default.target"
for u in serial-getty@ttyS0.service serial-getty@ttyS1.service getty@tty1.service getty.target \
         console-getty.service apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
         fstrim.timer e2scrub_all.timer e2scrub_reap.service systemd-timesyncd.service \
         systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service \
         systemd-resolved.service systemd-pstore.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$u"
done

# journald: persistent storage (the scenario's Forward Secure Sealing check
# needs /var/log/journal), no rate limits, nothing mirrored to the console
# (the report has a serial port of its own).
mkdir -p "$root/var/log/journal" "$root/etc/systemd/journald.conf.d"
cat > "$root/etc/systemd/journald.conf.d/execgate-vm.conf" <<'CONF'
[Journal]
Storage=persistent
Seal=yes
RateLimitIntervalSec=0
ForwardToConsole=no
CONF

# The test: mount the payload disk and run its scenario. The report goes to
# the second serial port (ttyS1), which nothing else writes to; ttyS0 is the
# console. Success or failure, the VM powers off afterwards.
cat > "$root/etc/systemd/system/execgate-vm-test.service" <<'UNIT'
[Unit]
Description=execgate VM test (payload /dev/vdb, scripts/vm/scenario.sh)
After=multi-user.target systemd-journald.service dev-ttyS1.device
Wants=dev-ttyS1.device
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
Environment=PAYLOAD=/payload REPORT=/dev/ttyS1
ExecStartPre=/bin/mkdir -p /payload
ExecStartPre=/bin/mount -o ro /dev/vdb /payload
ExecStart=/bin/bash /payload/scenario.sh
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/execgate-vm-test.service \
  "$root/etc/systemd/system/multi-user.target.wants/execgate-vm-test.service"

# The initrd must find /dev/vda: virtio_blk and ext4 (MODULES=most has
# both; checked below rather than trusted).
grep -q '^MODULES=most' "$root/etc/initramfs-tools/initramfs.conf" || {
  log "initramfs-tools is not MODULES=most"; exit 1; }

# Smaller image: documentation, locales and apt lists are not needed.
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
       "$root"/usr/share/locale/* "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
       "$root"/var/cache/apt/archives/*.deb

out=$tmp/out
mkdir -p "$out"
kver=$(basename "$(ls -d "$root"/lib/modules/*)")
cp "$root/boot/vmlinuz-$kver" "$out/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$out/initrd.img"
# Check the initrd holds virtio_blk and ext4 (an uncompressed early cpio may
# come first; unmkinitramfs from the image handles both).
chroot "$root" lsinitramfs "/boot/initrd.img-$kver" > "$tmp/initrd.list"
for m in virtio_blk ext4; do
  if ! grep -q "/$m\.ko" "$tmp/initrd.list" && ! grep -q "^CONFIG_$(echo "$m" | tr a-z A-Z)=y" "$root/boot/config-$kver"; then
    log "initrd lacks $m"; exit 1
  fi
done
chroot "$root" dpkg-query -W -f '${Package} ${Version}\n' > "$out/packages.txt"
for b in kill; do
  if [ -e "$root/bin/$b" ] || [ -e "$root/usr/bin/$b" ]; then log "/bin/$b is in the image"; exit 1; fi
done
t_cfg=$(since "$t1")

t2=$(now)
mkfs.ext4 -q -F -L egvm-root -E root_owner=0:0 -d "$root" "$out/base.img" "$IMG_SIZE" >&2
t_mkfs=$(since "$t2")
echo "$kver" > "$out/kernel-version"
printf 'debootstrap %s\nconfigure %s\nmkfs %s\n' "$t_deb" "$t_cfg" "$t_mkfs" > "$out/timings"

rm -rf "$root"
mv "$out" "$entry.new" && rm -rf "$entry" && mv "$entry.new" "$entry"
# Entries of other keys are stale (an older image.sh): drop them.
for d in "$VM_CACHE"/base-*; do [ "$d" = "$entry" ] || rm -rf "$d"; done
log "built $entry (kernel $kver) in $(since "$t0")s: debootstrap ${t_deb}s, configure ${t_cfg}s, mkfs ${t_mkfs}s; $(du -h --apparent-size "$entry/base.img" | cut -f1) apparent, $(du -h "$entry/base.img" | cut -f1) used"
echo "$entry"
