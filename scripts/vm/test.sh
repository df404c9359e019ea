#!/usr/bin/env bash
# scripts/vm/test.sh (make test-vm): boots the cached Debian bookworm image
# (scripts/vm/image.sh) under qemu with software emulation, a real systemd
# 252 on cgroup v2, and runs scripts/vm/scenario.sh inside: it installs
# bin/deb/execgate_*_amd64.deb with dpkg -i and drives the real units.
# Fails when any check in scripts/vm/checks is missing or failed, or the
# scenario never says DONE. See scripts/vm/README.
#
# Knobs: VM_CACHE (image cache, default /var/cache/execgate-vm),
# VM_TIMEOUT (seconds, default 900), VM_KEEP=1 (keep the work directory:
# logs, payload), VM_DEB=FILE (another package, for debugging only),
# VM_ONLY="section ..." (run only those scenario sections; a partial run),
# VM_SHELL=1 (console on this terminal, and a root shell in the VM before
# the package is removed; exit it to finish).
set -euo pipefail
cd "$(dirname "$0")/../.."
top=$PWD
VM_CACHE=${VM_CACHE:-/var/cache/execgate-vm}
VM_TIMEOUT=${VM_TIMEOUT:-900}
VM_KEEP=${VM_KEEP:-}
VM_ONLY=${VM_ONLY:-}
VM_SHELL=${VM_SHELL:-}
export VM_CACHE

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf 'test-vm: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (the image build needs it; qemu runs unprivileged work only)"
command -v qemu-system-x86_64 >/dev/null || die "no qemu-system-x86_64 (make deps installs it)"
command -v gcc >/dev/null || die "no gcc (for the static probe helper)"

if [ -n "${VM_DEB:-}" ]; then
  deb=$VM_DEB
  log "using VM_DEB=$deb (not bin/deb: for debugging only)"
else
  debs=("$top"/bin/deb/execgate_*_amd64.deb)
  [ ${#debs[@]} = 1 ] && [ -f "${debs[0]}" ] || die "want exactly one bin/deb/execgate_*_amd64.deb (make deb), found: ${debs[*]}"
  deb=${debs[0]}
fi

t_all=$(now)
# --- the base image ---------------------------------------------------------
t=$(now)
entry=$(scripts/vm/image.sh | tail -n 1)
t_image=$(since "$t")

# --- the payload disk -------------------------------------------------------
t=$(now)
work=$(mktemp -d /var/tmp/execgate-vm.XXXXXX)
qpid=
cleanup() {
  local rc=$?
  if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then kill "$qpid" 2>/dev/null || true; fi
  if [ "$rc" = 0 ] && [ -z "$VM_KEEP" ]; then rm -rf "$work"; else log "kept $work (console.log, report.log, payload/)"; fi
}
trap cleanup EXIT
pl=$work/payload
mkdir -p "$pl/profiles"
cp "$deb" "$pl/"
cp scripts/vm/scenario.sh "$pl/scenario.sh"
cp scripts/vm/profiles/*.toml "$pl/profiles/"
gcc -static -O2 -Wall -o "$pl/egvm-helper" scripts/vm/egvm-helper.c
: > "$pl/env"
[ -z "$VM_ONLY" ] || printf 'EGVM_ONLY=%q\n' "$VM_ONLY" >> "$pl/env"
[ -z "$VM_SHELL" ] || echo 'EGVM_SHELL=1' >> "$pl/env"
size=$(( $(du -sm "$pl" | cut -f1) + 32 ))
mkfs.ext4 -q -F -L egvm-payload -E root_owner=0:0 -d "$pl" "$work/payload.img" "${size}M" > /dev/null
t_payload=$(since "$t")

# --- boot -------------------------------------------------------------------
console=$work/console.log report=$work/report.log
: > "$report"
qemu=(qemu-system-x86_64 -accel tcg,thread=multi -cpu max -m 2048 -smp 2
  -nodefaults -no-user-config -display none -vga none -no-reboot -nic none
  -kernel "$entry/vmlinuz" -initrd "$entry/initrd.img"
  -append "root=/dev/vda rw console=ttyS0 panic=-1 systemd.show_status=1"
  -snapshot
  -drive "file=$entry/base.img,if=virtio,format=raw"
  -drive "file=$work/payload.img,if=virtio,format=raw,readonly=on")
if [ -n "$VM_SHELL" ]; then
  qemu+=(-serial mon:stdio -serial "file:$report")
  log "VM_SHELL: console on this terminal (Ctrl-A X quits qemu)"
  t=$(now)
  "${qemu[@]}" || true
  t_qemu=$(since "$t")
else
  qemu+=(-monitor none -serial "file:$console" -serial "file:$report")
  log "booting (console: $console, report: $report, timeout ${VM_TIMEOUT}s)"
  t=$(now)
  "${qemu[@]}" &
  qpid=$!
  deadline=$(( $(date +%s) + VM_TIMEOUT ))
  seen=0
  while kill -0 "$qpid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "timeout after ${VM_TIMEOUT}s: killing qemu"
      kill "$qpid" 2>/dev/null || true; sleep 2; kill -9 "$qpid" 2>/dev/null || true
      break
    fi
    # Echo report lines as they come.
    n=$(wc -l < "$report")
    if [ "$n" -gt "$seen" ]; then sed -n "$((seen + 1)),${n}p" "$report" | tr -d '\r' | sed 's/^/  | /' >&2; seen=$n; fi
    sleep 1
  done
  wait "$qpid" 2>/dev/null || true
  qpid=
  t_qemu=$(since "$t")
fi

# --- the verdict ------------------------------------------------------------
tr -d '\r' < "$report" > "$work/report.txt"
rep=$work/report.txt
fails=0
problems=()
while read -r name; do
  case $name in ''|'#'*) continue ;; esac
  if grep -q "^EGVM ok $name\( \|$\)" "$rep" && ! grep -q "^EGVM fail $name\( \|$\)" "$rep"; then continue; fi
  if grep -q "^EGVM fail $name\( \|$\)" "$rep"; then
    problems+=("FAILED  $name: $(grep -m1 "^EGVM fail $name\( \|$\)" "$rep" | cut -d' ' -f4-)")
    fails=$((fails + 1))
  elif [ -n "$VM_ONLY" ]; then
    problems+=("skipped $name (VM_ONLY)")
  else
    problems+=("MISSING $name: never reported")
    fails=$((fails + 1))
  fi
done < scripts/vm/checks
while read -r _ _ name _; do
  grep -qx "$name" scripts/vm/checks || { problems+=("UNKNOWN $name: reported but not in scripts/vm/checks"); fails=$((fails + 1)); }
done < <(grep -E '^EGVM (ok|fail) ' "$rep")
grep -q '^EGVM DONE' "$rep" || { problems+=("no EGVM DONE: the scenario did not finish"); fails=$((fails + 1)); }

boot=$(sed -n 's/^EGVM begin uptime=\([0-9.]*\)s.*/\1/p' "$rep" | head -n 1)
scen=$(sed -n 's/^EGVM time scenario \([0-9.]*\)$/\1/p' "$rep" | head -n 1)
echo "== test-vm report ($(grep -c '^EGVM ok ' "$rep") ok, $(grep -c '^EGVM fail ' "$rep") failed, $(grep -cv '^[[:space:]]*\(#\|$\)' scripts/vm/checks) expected)"
grep -E '^EGVM (ok|fail) ' "$rep" | sed -e 's/^EGVM ok /  ok    /' -e 's/^EGVM fail /  FAIL  /'
echo "== sections: $(grep '^EGVM time ' "$rep" | grep -v ' scenario ' | awk '{ printf "%s %ss  ", $3, $4 }')"
echo "== timings: image ${t_image}s, payload ${t_payload}s, boot ${boot:-?}s, scenario ${scen:-?}s, qemu total ${t_qemu}s, all $(since "$t_all")s"
if [ "$fails" != 0 ]; then
  printf '  %s\n' "${problems[@]}"
  echo "== console tail ($console)"
  tail -n 60 "$console" 2>/dev/null | tr -d '\r' | sed 's/^/  /'
  echo "test-vm: FAILED ($fails)"
  exit 1
fi
[ ${#problems[@]} = 0 ] || printf '  %s\n' "${problems[@]}"
echo "test-vm: PASS"
