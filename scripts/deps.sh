#!/usr/bin/env bash
# make deps: installs, with apt-get, what building, testing and the demo
# need, only what is missing. The package lists are refreshed first only
# when they are empty or the install cannot find a package.
set -euo pipefail
need=()
want() { # want PACKAGE CHECK...: PACKAGE is missing when any CHECK fails
  local pkg=$1; shift
  for c in "$@"; do
    case $c in
      /*) [ -e "$c" ] || { need+=("$pkg"); return; } ;;
      *) command -v "$c" >/dev/null 2>&1 || { need+=("$pkg"); return; } ;;
    esac
  done
}
# Build: cgo against libseccomp.
pkg-config --exists libseccomp 2>/dev/null || need+=(libseccomp-dev)
want pkg-config pkg-config
want gcc gcc
want libc6-dev /usr/include/stdio.h
want make make
want git git
# Tests and the demo: journald run standalone, unit checks, socket
# activation; namespaces and identities; the programs the exec-check and
# bypass tests run inside the sandbox; bwrap as the benchmark baseline.
want systemd /lib/systemd/systemd-journald journalctl systemd-analyze systemd-socket-activate systemd-sysusers systemd-tmpfiles
want util-linux setpriv unshare
want mount mount umount
want procps pgrep /bin/kill
want e2fsprogs chattr
want python3 /usr/bin/python3
want nodejs node
want npm npm
want perl perl
want strace strace
want bubblewrap bwrap
want gdb gdb
want vim vim
want tcl tclsh
want zip zip
want xxd xxd
want ed ed
want openssh-client ssh
want bsdextrautils hexdump
# make deb and make test-vm: lintian on the package; debootstrap, an ext4
# image and qemu (software emulation) for the systemd VM.
want lintian lintian
want debootstrap debootstrap
want qemu-system-x86 qemu-system-x86_64
want qemu-utils qemu-img
# The fleet test: journald's own upload and receiver.
want systemd-journal-remote /lib/systemd/systemd-journal-remote /lib/systemd/systemd-journal-upload
want iproute2 ip
# The network tests (integration/network*_test.go): the clients they run
# inside a proxy-mode run and without execgate (ping, nc, socat, dig; pip
# for /usr/bin/python3), besides curl, wget, git, npm, perl and ssh.
want curl curl
want wget wget
want iputils-ping ping
want netcat-openbsd nc
want socat socat
want bind9-dnsutils dig
want python3-pip /usr/lib/python3/dist-packages/pip

[ ${#need[@]} -gt 0 ] || exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps: missing ${need[*]}; run as root or install them" >&2
  exit 1
fi
echo "deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || ! install; then
  apt-get update -qq
  install
fi
