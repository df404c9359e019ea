#!/bin/bash
# scripts/vm/scenario.sh: the service scenario, run as root inside the VM by
# execgate-vm-test.service (scripts/vm/image.sh) from the payload disk that
# scripts/vm/test.sh builds. It installs the .deb and drives the real units
# under systemd 252 on cgroup v2.
#
# Report (on $REPORT, the VM's second serial port): one line per check,
#   EGVM ok NAME detail      or      EGVM fail NAME detail
# plus "EGVM time PHASE SECONDS" lines and a final "EGVM DONE". Every check
# is independent: a failure is reported and the scenario goes on. The host
# holds the list of expected names (scripts/vm/checks), so a check that
# never ran fails too. The full output of every check goes to stdout (the
# journal and the console, ttyS0).
#
# No procps in the image: processes are found through /proc, and signals
# are sent with the shell's builtin kill.
set -u
PAYLOAD=${PAYLOAD:-/payload}
REPORT=${REPORT:-/dev/ttyS1}
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
export SYSTEMD_PAGER= SYSTEMD_COLORS=0
# shellcheck disable=SC1091
[ -f "$PAYLOAD/env" ] && . "$PAYLOAD/env"   # EGVM_ONLY="section ..." (debugging)

stty -F "$REPORT" raw -echo 2>/dev/null || true
exec 3>>"$REPORT"
W=/root/egvm
mkdir -p "$W"
say() { printf '%s\n' "$*" >&3; printf '%s\n' "$*"; }
t_begin=$(cut -d' ' -f1 /proc/uptime)
say "EGVM begin uptime=${t_begin}s kernel=$(uname -r) $(systemctl --version | head -1)"

# --- the check runner ----------------------------------------------------
# check NAME CMD...: runs CMD in this shell (so it may set state) with its
# output captured; the last lines of that output are the detail.
NFAIL=0
check() {
  local name=$1 rc detail
  shift
  CHECK_FAILED=0
  "$@" > "$W/check.out" 2>&1
  rc=$?
  [ "$CHECK_FAILED" = 0 ] || [ "$rc" != 0 ] || rc=1
  detail=$(tail -n 4 "$W/check.out" | tr '\n\r\t' '   ' | tr -s ' ' | cut -c1-400)
  sed "s/^/[$name] /" "$W/check.out"
  if [ "$rc" = 0 ]; then
    say "EGVM ok $name $detail"
  else
    NFAIL=$((NFAIL + 1))
    say "EGVM fail $name (rc $rc) $detail"
  fi
}
# section NAME: true when NAME is to run (all, unless EGVM_ONLY names some).
section() {
  local now; now=$(cut -d' ' -f1 /proc/uptime)
  [ -n "${SECTION:-}" ] && say "EGVM time $SECTION $(awk -v a="$SECTION_T" -v b="$now" 'BEGIN{printf "%.1f", b-a}')"
  SECTION=$1 SECTION_T=$now
  wants "$1"
}
wants() {
  [ -z "${EGVM_ONLY:-}" ] && return 0
  case " base install activation remove end $EGVM_ONLY " in *" $1 "*) return 0 ;; esac
  return 1
}
# fail MSG: the current check fails (even if the test function goes on).
fail() { echo "FAIL: $*"; CHECK_FAILED=1; return 1; }
# wait_for SECONDS CMD...: polls CMD every 0.2 s until it succeeds (CMD is
# run afresh each time: pass a function, not a $(...) evaluated once).
wait_for() {
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.2
  done
}

# --- helpers -------------------------------------------------------------
# agent USER CWD SCRIPT: egsh -c SCRIPT as USER from CWD; sets RC and OUT
# (stdout and stderr together). A minute at most: flow asks on a miss.
agent() {
  OUT=$(cd "$2" && timeout 60 setpriv --reuid="$1" --regid="$1" --clear-groups \
        env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="/home/$1" LANG=C.UTF-8 \
        egsh -c "$3" 2>&1)
  RC=$?
  printf '$ egsh -c %q  [as %s, exit %s]\n%s\n' "$3" "$1" "$RC" "$OUT"
}
# agent_bg USER CWD SCRIPT: the same in the background; BG is egsh's pid,
# its output goes to $W/bg.out.
agent_bg() {
  ( cd "$2" && exec setpriv --reuid="$1" --regid="$1" --clear-groups \
      env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="/home/$1" LANG=C.UTF-8 \
      egsh -c "$3" ) > "$W/bg.out" 2>&1 &
  BG=$!
}
expect_rc() { [ "$RC" = "$1" ] || fail "want exit $1, got $RC"; }
expect_out() { case $OUT in *"$1"*) ;; *) fail "output lacks: $1" ;; esac; }
prop() { systemctl show -p "$2" --value "$1"; }
mainpid() { prop execgated.service MainPID; }
# props UNIT P...: one systemctl call; sets P_<property> for each.
props() {
  local u=$1 k v args=(); shift
  for k in "$@"; do args+=(-p "$k"); done
  while IFS='=' read -r k v; do printf -v "P_$k" '%s' "$v"; done < <(systemctl show "${args[@]}" "$u")
}
svc_active() { [ "$(systemctl is-active execgated.service)" = active ]; }
has_status_text() { [ -n "$(prop execgated.service StatusText)" ]; }
has_proc() { [ -n "$(procs_of "$@")" ]; }
# procs_of UID [COMM]: pids of processes with that real uid (and comm).
# Shell builtins only: a fork costs tens of milliseconds under TCG, and
# there are a few hundred processes.
procs_of() {
  local p k v comm uid
  for p in /proc/[0-9]*; do
    uid=
    { while read -r k v _; do [ "$k" = Uid: ] && { uid=$v; break; }; done < "$p/status"; } 2>/dev/null
    [ "$uid" = "$1" ] || continue
    if [ -n "${2:-}" ]; then
      { read -r comm < "$p/comm"; } 2>/dev/null || continue
      [ "$comm" = "$2" ] || continue
    fi
    echo "${p#/proc/}"
  done
}
procs_named() { # pids whose comm is $1
  local p comm
  for p in /proc/[0-9]*; do
    { read -r comm < "$p/comm"; } 2>/dev/null && [ "$comm" = "$1" ] && echo "${p#/proc/}"
  done
}
# Journal: mark remembers the journal's end; jsince prints, as JSON lines,
# the execgated records written after it that match the given fields.
# journalctl --sync first: journald may still hold records the daemon sent
# (under emulation it can lag behind by a second or more). The mark is a
# time, not a cursor: journalctl 252 with --after-cursor and field matches
# skips the first matching entry when the cursor's own entry does not match.
mark() { journalctl --sync; MARK=$(date +%s%6N); }
jsince() {
  journalctl --sync
  journalctl -q -o json -t execgated --since "@$(( MARK / 1000000 ))" "$@" |
    awk -v m="$MARK" 'match($0, /"__REALTIME_TIMESTAMP":"[0-9]+"/) && substr($0, RSTART + 24, RLENGTH - 25) + 0 > m + 0'
}
jall() { journalctl --sync; journalctl -q -o json -t execgated "$@"; }
has_since() { [ -n "$(jsince "$@" | head -n 1)" ]; }
field() { grep -o "\"$1\":\"[^\"]*\"" | head -n 1 | cut -d'"' -f4; }
# run_id SCRIPT: the id of the run whose request record holds SCRIPT.
run_id() { jall EXECGATE_EVENT=request "EXECGATE_SCRIPT=$1" | tail -n 1 | field EXECGATE_ID; }
has_run_id() { [ -n "$(run_id "$1")" ]; }
subtree() { echo "/: $(cat /sys/fs/cgroup/cgroup.subtree_control); system.slice: $(cat /sys/fs/cgroup/system.slice/cgroup.subtree_control)"; }
SVC_CG=/sys/fs/cgroup/system.slice/execgated.service
active_with_new_pid() {
  props execgated.service ActiveState MainPID
  [ "$P_ActiveState" = active ] && [ "$P_MainPID" != "$1" ] && [ "$P_MainPID" != 0 ]
}
# The run's records are found by the script's text: each background run
# gets a script of its own (sleep 61, sleep 62, ...).
run_started() { has_run_id "$1" && has_proc "$WORKER_UID" sleep; }

# ==========================================================================
section base
t_env() {
  echo "fs: $(stat -fc %T /sys/fs/cgroup)"
  [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] || fail "not cgroup v2"
  systemctl --version | head -1 | grep -q '^systemd 252 ' || fail "not systemd 252"
}
check env-cgroup2-systemd252 t_env
t_nokill() {
  # systemctl reload must work without /bin/kill: there is none here.
  [ -z "$(type -P kill)" ] || fail "a kill program exists: $(type -P kill)"
  ! dpkg-query -W -f '${Status}' procps 2>/dev/null | grep -q installed || fail "procps is installed"
  echo "no kill program, no procps; kill is a $(type -t kill)"
}
check env-no-bin-kill t_nokill
SUBTREE_BEFORE=$(subtree)
echo "subtree_control before: $SUBTREE_BEFORE"

# Forward Secure Sealing, set up first so that the whole test's journal is
# sealed by the time it is verified (section fss, at the end).
JDIR=/var/log/journal/$(cat /etc/machine-id)
t_fss_setup() {
  journalctl --setup-keys --interval=10s > "$W/fsskey" 2> "$W/fss.err" || { cat "$W/fss.err"; fail "setup-keys"; }
  FSSKEY=$(grep -o '[0-9a-f]\{6\}-[0-9a-f]\{6\}-[0-9a-f]\{6\}-[0-9a-f]\{6\}/[0-9a-f]*-[0-9a-f]*' "$W/fsskey" | head -n 1)
  [ -n "$FSSKEY" ] || { cat "$W/fsskey" "$W/fss.err"; fail "no verification key"; }
  [ -f "$JDIR/fss" ] || fail "no $JDIR/fss"
  # journald loads the sealing key when it opens a journal file.
  systemctl restart systemd-journald.service
  journalctl --rotate
  journalctl --header --file "$JDIR/system.journal" | grep -E 'Compatible|Sealed|Tag' || true
  journalctl --header --file "$JDIR/system.journal" | grep -q 'Compatible flags:.*SEALED' || fail "the new system.journal is not sealed"
  echo "verification key captured; system.journal sealed (interval 10s)"
}
wants fss && check fss-setup-keys t_fss_setup

# For test speed the watchdog interval is 10s instead of the unit's 30s: a
# runtime drop-in, in place before the package's own daemon-reload. (The
# daemon pings at half of whatever WATCHDOG_USEC it is given.)
mkdir -p /run/systemd/system/execgated.service.d
printf '[Service]\nWatchdogSec=10s\n' > /run/systemd/system/execgated.service.d/egvm-watchdog.conf

# ==========================================================================
section install
DEB=$(ls "$PAYLOAD"/*.deb)
t_install() {
  dpkg -i "$DEB" || fail "dpkg -i failed"
  dpkg-query -W -f '${Package} ${Version} ${Status}\n' execgate
  dpkg-query -W -f '${Status}' execgate | grep -q 'install ok installed' || fail "not installed"
}
check pkg-install t_install
dpkg -L execgate > "$W/pkg-files"
t_units() {
  local u
  for u in execgated.service execgated.socket execgated-admin.socket; do
    [ -f "/lib/systemd/system/$u" ] || fail "no /lib/systemd/system/$u"
  done
  for b in execgated execgate egsh; do [ -x "/usr/bin/$b" ] || fail "no /usr/bin/$b"; done
  prop execgated.service ExecStart | grep -q 'path=/usr/bin/execgated ' || fail "ExecStart: $(prop execgated.service ExecStart)"
  prop execgated.service ExecReload | grep -q 'path=/usr/bin/execgate ' || fail "ExecReload: $(prop execgated.service ExecReload)"
  getent group execgate-admin >/dev/null || fail "no execgate-admin group (sysusers)"
  systemd-analyze verify /lib/systemd/system/execgated.service /lib/systemd/system/execgated.socket \
    /lib/systemd/system/execgated-admin.socket || fail "systemd-analyze verify"
  echo "units, binaries in /usr/bin, execgate-admin group; systemd-analyze verify clean"
}
check pkg-units t_units
t_not_enabled() {
  local units=(execgated.socket execgated-admin.socket execgated.service) en ac
  en=$(systemctl is-enabled "${units[@]}" 2>&1 | tr '\n' ' ')
  ac=$(systemctl is-active "${units[@]}" 2>&1 | tr '\n' ' ')
  echo "${units[*]}: is-enabled: $en; is-active: $ac"
  case " $en " in *" enabled "*) fail "enabled by the package" ;; esac
  [ "$ac" = "inactive inactive inactive " ] || fail "started by the package"
}
check pkg-sockets-not-enabled t_not_enabled

# Accounts, the checkout flow was let loose on (as in scripts/demo.sh), the
# worker's directory, the profiles.
useradd -m -U -s /bin/bash flow && useradd -m -U -s /bin/bash worker
repo=/srv/fibreflow
mkdir -p "$repo/src" /srv/work
(
  cd "$repo" && git init -q -b main . &&
  printf '%s\n' '{ "name": "fibreflow", "scripts": { "test": "echo tests: 42 passed", "build": "echo BUILT > dist.txt" } }' > package.json &&
  echo 'export const badge = 44;' > src/badge.ts &&
  echo 'FIBREFLOW_API_TOKEN=ff_live_7Qx2sKc9VbN4' > .env &&
  printf '.env\n' > .gitignore &&
  git add -A && git -c user.name=dev -c user.email=dev@example.com commit -qm initial &&
  echo 'export const touchTarget = 48;' >> src/badge.ts
)
chown -R flow:flow "$repo"
echo 'WORKER_SECRET=s3cr3t-bytes-that-must-not-leak' > /srv/work/secret.txt
cat > /srv/work/peek.sh <<'PEEK'
#!/bin/sh
# The exec check refuses cat (deny_read names its argument); the shell's own
# reads go to the file itself, which the mount mask has emptied.
cat /srv/work/secret.txt
echo "read=$(while IFS= read -r l; do printf %s "$l"; done < /srv/work/secret.txt)"
echo "size=$(wc -c < /srv/work/secret.txt)"
PEEK
chmod 0755 /srv/work/peek.sh
chown worker:worker /srv/work /srv/work/secret.txt
install -m 0755 "$PAYLOAD/egvm-helper" /usr/local/bin/egvm-helper
# flow: the packaged example, without its office-hours schedule (as the demo).
sed -e '/^\[schedule\]/,/^$/d' /usr/share/execgate/examples/flow.toml > /etc/execgate/agents/flow.toml
install -m 0644 "$PAYLOAD/profiles/worker.toml" /etc/execgate/agents/worker.toml
# The worker's egress (section network): both names are this VM's loopback
# to the daemon, which private_ok lets it dial; only one is allowed.
printf '127.0.0.1 vmhost.test backboard.railway.app\n' >> /etc/hosts
printf '\n[network]\nprivate_ok = ["127.0.0.0/8"]\n' >> /etc/execgate/execgate.toml
chmod 0644 /etc/execgate/agents/flow.toml
FLOW_UID=$(id -u flow) WORKER_UID=$(id -u worker)
t_lint() { execgate lint --config /etc/execgate/execgate.toml /etc/execgate/agents; }
check profiles-lint t_lint

# ==========================================================================
section activation
t_enable() {
  echo "before: service $(systemctl is-active execgated.service), MainPID $(mainpid)"
  [ "$(systemctl is-active execgated.service)" = inactive ] || fail "service already active"
  systemctl enable --now execgated.socket execgated-admin.socket || fail "enable --now failed"
  [ "$(systemctl is-active execgated.socket)" = active ] || fail "agent socket not listening"
  [ "$(systemctl is-active execgated-admin.socket)" = active ] || fail "admin socket not listening"
  [ "$(systemctl is-active execgated.service)" = inactive ] || fail "enabling the sockets started the service"
  echo "sockets listening, service still $(systemctl is-active execgated.service)"
}
check activation-sockets-enabled t_enable
t_sockmodes() {
  local a b
  a=$(stat -c '%a %U:%G' /run/execgate/agent.sock) b=$(stat -c '%a %U:%G' /run/execgate/admin.sock)
  echo "agent.sock $a, admin.sock $b"
  [ "$a" = "666 root:root" ] || fail "agent.sock $a"
  [ "$b" = "660 root:execgate-admin" ] || fail "admin.sock $b"
}
check activation-socket-modes t_sockmodes
t_first() {
  agent flow "$repo" 'git status --short'
  expect_rc 0 && expect_out 'M src/badge.ts' || return 1
  wait_for 10 svc_active
  echo "after the first egsh: service $(systemctl is-active execgated.service), MainPID $(mainpid)"
  svc_active || fail "not started by the connection"
}
check activation-first-egsh-starts-service t_first
t_notify() {
  wait_for 10 has_status_text
  props execgated.service Type NotifyAccess ActiveState SubState StatusText WatchdogUSec
  echo "Type=$P_Type NotifyAccess=$P_NotifyAccess ActiveState=$P_ActiveState SubState=$P_SubState WatchdogUSec=$P_WatchdogUSec (unit: $(grep '^WatchdogSec=' /lib/systemd/system/execgated.service), drop-in 10s)"
  echo "StatusText=$P_StatusText"
  [ "$P_Type" = notify ] || fail "Type"
  [ "$P_NotifyAccess" = main ] || fail "NotifyAccess"
  # Type=notify: active (not activating) means READY=1 arrived.
  [ "$P_ActiveState" = active ] && [ "$P_SubState" = running ] || fail "not active/running"
  case $P_StatusText in *"2 agents"*) ;; *) fail "StatusText '$P_StatusText'" ;; esac
  grep -q '^WatchdogSec=30s' /lib/systemd/system/execgated.service || fail "unit WatchdogSec"
  [ "$P_WatchdogUSec" = 10s ] || fail "WatchdogUSec"
}
check notify-ready-status t_notify

# ==========================================================================
if section incident; then
deny_line() { expect_rc 126 && expect_out "execgate: denied: $1" && expect_out "$2"; }
t_i1() { agent flow "$repo" 'git checkout flow/a11y-badge-recordings'; deny_line 'git checkout flow/a11y-badge-recordings' '(flow.toml:14)'; }
t_i2() { agent flow "$repo" 'npm run build'; deny_line 'npm run build' '(flow.toml:19)'; }
t_i3() { agent flow "$repo" 'git add -A && git commit -m "WCAG touch target fixes"'; deny_line 'git add -A' '(flow.toml:14)'; }
t_i4() { agent flow "$repo" 'cat .env'; deny_line 'cat .env' 'deny_read "**/.env"'; }
t_i5() { agent flow "$repo" "bash -c 'git checkout main'"; deny_line 'git checkout main' '(flow.toml:14)'; }
t_i6() { agent flow "$repo" 'git -c alias.co=checkout co -b flow/x'; expect_rc 126 && expect_out 'execgate: denied:'; }
t_i7() {
  agent flow "$repo" 'git log --oneline -3'; expect_rc 0 && expect_out initial || return 1
  agent flow "$repo" 'ls -la src | grep badge'; expect_rc 0 && expect_out badge.ts
}
t_after() {
  local g="git -c safe.directory=* -C $repo" branch branches
  branch=$($g rev-parse --abbrev-ref HEAD) branches=$($g branch --format='%(refname:short)' | tr '\n' ' ')
  echo "branch $branch; branches: $branches; commits $($g rev-list --count HEAD); dist.txt: $([ -e $repo/dist.txt ] && echo present || echo absent)"
  [ "$branch" = main ] && [ "$branches" = "main " ] || fail "the branch changed"
  [ ! -e "$repo/dist.txt" ] || fail "a build ran"
  [ "$($g rev-list --count HEAD)" = 1 ] || fail "a commit was made"
  $g status --porcelain | grep -q '^ M src/badge.ts' || fail "work in progress lost"
}
check incident-checkout-denied t_i1
check incident-npm-build-denied t_i2
check incident-add-commit-denied t_i3
check incident-cat-env-denied t_i4
check incident-bash-c-denied t_i5
check incident-git-alias-denied t_i6
check incident-review-allowed t_i7
check incident-nothing-changed t_after

# [changes] mode = "review" (flow.toml): 250 new files are over max_files,
# so they are held; while held they are not in the real tree; rejected,
# they never arrive and egsh exits 126.
t_changes_held() {
  local id=
  mark
  agent_bg flow "$repo" 'for i in {1..250}; do echo draft > notes-$i.md; done; echo wrote'
  for _ in $(seq 150); do
    id=$(execgate approvals -o json 2>/dev/null | sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p' | head -n 1)
    [ -n "$id" ] && break; sleep 0.2
  done
  [ -n "$id" ] || { kill "$BG" 2>/dev/null; cat "$W/bg.out"; fail "nothing held"; return 1; }
  execgate changes "$id" > "$W/changes"; head -n 3 "$W/changes"
  grep -q 'over max_files = 200' "$W/changes" || fail "execgate changes does not say which cap"
  [ "$(ls "$repo" | grep -c '^notes-')" = 0 ] || fail "held files are in the real tree"
  execgate reject "$id" --reason "vm test" || fail "reject failed"
  wait "$BG"; local rc=$?
  cat "$W/bg.out"
  [ "$rc" = 126 ] || fail "egsh exit $rc, want 126"
  [ "$(ls "$repo" | grep -c '^notes-')" = 0 ] || fail "rejected files reached the real tree"
  jsince EXECGATE_EVENT=changes EXECGATE_ID="$id" > "$W/j"
  grep -q '"EXECGATE_DECISION":"held"' "$W/j" && grep -q '"EXECGATE_DECISION":"rejected"' "$W/j" || { cat "$W/j"; fail "no held and rejected changes records"; }
  local left; left=$(find /var/lib/execgate/changes /.execgate-changes -mindepth 1 2>/dev/null)
  [ -z "$left" ] || fail "leftovers: $left"
}
check changes-held-rejected t_changes_held

t_nested() {
  local g="git -c safe.directory=* -C $repo"
  mark
  # awk is allowed; what its system() runs is checked as it execs.
  agent flow "$repo" "awk 'BEGIN { r = system(\"git checkout -b nested\"); print \"system() returned \" r }'"
  expect_rc 0 || return 1
  expect_out 'execgate: denied' || return 1
  $g rev-parse --verify -q refs/heads/nested && fail "branch nested exists"
  jsince EXECGATE_EVENT=exec EXECGATE_DECISION=deny > "$W/j"
  grep -q '"EXECGATE_ARGV":"\[\\"git\\",\\"checkout\\",\\"-b\\",\\"nested\\"\]"' "$W/j" || { cat "$W/j"; fail "no exec deny record for git checkout -b nested"; }
  echo "exec deny journaled: $(field MESSAGE < "$W/j")"
}
check nested-exec-denied t_nested
fi

# ==========================================================================
if section mask; then
t_mask_static() { agent worker /srv/work 'cat secret.txt'; expect_rc 126 && expect_out 'deny_read'; }
check mask-static-deny t_mask_static
t_mask() {
  mark
  agent worker /srv/work './peek.sh'
  case $OUT in *s3cr3t*) fail "the secret's bytes came out" ;; esac
  expect_out 'size=0' && expect_out 'read=
' || return 1
  jsince EXECGATE_EVENT=start > "$W/j"
  grep -q '"EXECGATE_MASKED":"[1-9]' "$W/j" || { cat "$W/j"; fail "start record: no EXECGATE_MASKED count"; }
  echo "masked: the run read an empty file; start record EXECGATE_MASKED=$(field EXECGATE_MASKED < "$W/j")"
}
check mask-bytes-hidden t_mask
fi

# ==========================================================================
if section network; then
egvm-helper serve 8088 "$W/served" &
SERVER=$!
wait_for 10 test -s "$W/served"
t_net_allowed() {
  mark
  agent worker /srv/work 'exec 3<>/dev/tcp/vmhost.test/8088 && head -n 1 <&3'
  expect_rc 0 && expect_out 'egvm-hello 1' || return 1
  [ "$(cat "$W/served")" = 1 ] || fail "the server counted $(cat "$W/served") connections"
}
check net-proxy-allowed t_net_allowed
t_net_denied() {
  agent worker /srv/work 'exec 3<>/dev/tcp/backboard.railway.app/8088 && head -n 1 <&3; getent ahostsv4 backboard.railway.app | head -n 1'
  expect_out 'execgate: denied: connect backboard.railway.app:8088' && expect_out '198.18.0.' || return 1
  case $OUT in *egvm-hello*) fail "the denied name was reached" ;; esac
  [ "$(cat "$W/served")" = 1 ] || fail "the server saw a connection for the denied name ($(cat "$W/served") in all)"
}
check net-proxy-denied-no-connection t_net_denied
t_net_journal() {
  jsince EXECGATE_EVENT=connect > "$W/j"
  grep -q '"EXECGATE_HOST":"vmhost.test".*' "$W/j" && grep -q '"EXECGATE_DECISION":"deny"' "$W/j" || { cat "$W/j"; fail "no connect records for both"; }
  jsince EXECGATE_EVENT=disconnect EXECGATE_HOST=vmhost.test > "$W/d"
  [ "$(field EXECGATE_BYTES_IN < "$W/d")" = 13 ] || { cat "$W/d"; fail "disconnect record: want EXECGATE_BYTES_IN=13"; }
  execgate journal --event connect --since "@$(( MARK / 1000000 ))" | tee "$W/short"
  grep -q 'worker DENY connect backboard.railway.app:8088 \[worker.toml:' "$W/short" || fail "no short DENY line"
}
check net-proxy-journal t_net_journal
kill $SERVER
fi

# ==========================================================================
if section limits; then
t_mem() {
  local id
  agent worker /srv/work 'egvm-helper alloc 400'
  expect_rc 137 || return 1
  id=$(run_id 'egvm-helper alloc 400')
  jall EXECGATE_EVENT=end EXECGATE_ID="$id" > "$W/j"
  grep -q 'out of memory' "$W/j" || { cat "$W/j"; fail "end record does not say out of memory"; }
  grep -q '"EXECGATE_OOM_KILLED":"1"' "$W/j" || { cat "$W/j"; fail "end record has no EXECGATE_OOM_KILLED=1"; }
  echo "end record: $(field MESSAGE < "$W/j"), EXECGATE_OOM_KILLED=$(field EXECGATE_OOM_KILLED < "$W/j"), signal $(field EXECGATE_SIGNAL < "$W/j"), peak $(field EXECGATE_MEM_PEAK < "$W/j")"
}
check limit-memory-oom-killed t_mem
t_pids() { agent worker /srv/work 'egvm-helper fork 64'; expect_rc 3 && expect_out 'errno=EAGAIN'; }
check limit-pids-fork-fails t_pids
t_alive() { svc_active || fail "service $(systemctl is-active execgated.service) after the OOM kill"; echo "service still active (OOMPolicy=continue), NRestarts $(prop execgated.service NRestarts)"; }
check limit-service-survives-oom t_alive
fi

# ==========================================================================
if section cgroups; then
agent_bg worker /srv/work 'sleep 61'
wait_for 30 run_started 'sleep 61'
RUN=$(run_id 'sleep 61')
SLEEP=$(procs_of "$WORKER_UID" sleep | head -n 1)
t_cg_run() {
  local cg; cg=$(cat "/proc/$SLEEP/cgroup" 2>/dev/null)
  echo "run $RUN: sleep pid $SLEEP in $cg"
  [ -n "$RUN" ] && [ "$cg" = "0::/system.slice/execgated.service/runs/worker/$RUN" ] || fail "want 0::/system.slice/execgated.service/runs/worker/$RUN"
}
check cgroup-run-in-service-subtree t_cg_run
t_cg_daemon() {
  local cg; cg=$(cat "/proc/$(mainpid)/cgroup")
  echo "daemon pid $(mainpid) in $cg; service cgroup holds: $(ls $SVC_CG | grep -v '\.' | tr '\n' ' ')"
  [ "$cg" = "0::/system.slice/execgated.service/daemon" ] || fail "daemon not in .../daemon"
}
check cgroup-daemon-leaf t_cg_daemon
SUBTREE_DURING=$(subtree)
t_cg_limits() {
  local d=$SVC_CG/runs/worker/$RUN
  echo "memory.max $(cat $d/memory.max), pids.max $(cat $d/pids.max), cpu.max $(cat $d/cpu.max 2>/dev/null)"
  [ "$(cat $d/memory.max)" = $((96 << 20)) ] || fail "memory.max"
  # pids = 32 plus the 8 the daemon reserves for the run init's own
  # threads (supervisor/sandbox: initPidsReserve).
  [ "$(cat $d/pids.max)" = 40 ] || fail "pids.max"
}
check cgroup-run-limits t_cg_limits
t_runs() { execgate runs > "$W/runs"; cat "$W/runs"; grep -q "$RUN.*worker.*sleep 61" "$W/runs" || fail "execgate runs does not list $RUN"; }
check admin-runs-lists-run t_runs
t_cancel() {
  kill -INT "$BG"; wait "$BG"; echo "egsh exit $? after SIGINT"
  wait_for 10 test ! -e "$SVC_CG/runs/worker/$RUN" || fail "run cgroup left"
  [ -z "$(procs_of "$WORKER_UID")" ] || fail "worker processes left: $(procs_of "$WORKER_UID")"
  jall EXECGATE_EVENT=end EXECGATE_ID="$RUN" | grep -q . || fail "no end record"
  echo "cancelled: cgroup gone, end record written"
}
check cgroup-cancel-cleans-up t_cancel
fi

# ==========================================================================
if section reload; then
t_reload() {
  local pid; pid=$(mainpid)
  mark
  [ -z "$(type -P kill)" ] || fail "kill program present"
  systemctl reload execgated.service || fail "systemctl reload failed"
  [ "$(mainpid)" = "$pid" ] || fail "MainPID changed"
  jsince EXECGATE_EVENT=reload > "$W/j"
  grep -q . "$W/j" || fail "no reload record"
  echo "reload (no /bin/kill): $(field MESSAGE < "$W/j")"
}
check reload-systemctl-without-bin-kill t_reload
cp /etc/execgate/agents/flow.toml "$W/flow.good"
t_edit() {
  agent flow "$repo" 'uname -s'; expect_rc 0 || return 1
  mark
  printf '\n[[rule]]\nmatch = "uname **"\naction = "deny"\nreason = "vm test: edited live"\n' > "$W/rule"
  # A new rule goes before the tables that follow the rules: rewrite the
  # file with the rule appended after the last [[rule]] block, in place.
  awk -v rule="$(cat "$W/rule")" '/^\[files\]/ && !done { print rule; print ""; done=1 } { print }' "$W/flow.good" > /etc/execgate/agents/flow.toml
  wait_for 10 has_since EXECGATE_EVENT=reload || fail "no reload record after the edit"
  agent flow "$repo" 'uname -s'; expect_rc 126 && expect_out 'vm test: edited live'
}
check reload-inotify-picks-up-edit t_edit
t_broken() {
  mark
  sed 's/^security = "allowlist"/security = "bogus"/' /etc/execgate/agents/flow.toml > "$W/flow.broken"
  cat "$W/flow.broken" > /etc/execgate/agents/flow.toml
  wait_for 10 has_since EXECGATE_EVENT=error || fail "no error record for the broken profile"
  jsince EXECGATE_EVENT=error | field MESSAGE > "$W/err"
  echo "error record: $(cat "$W/err")"
  grep -q 'flow.toml:[0-9]*: security' "$W/err" || fail "the error record does not name flow.toml:LINE"
  agent flow "$repo" 'uname -s'; expect_rc 126 && expect_out 'vm test: edited live' || return 1
  agent flow "$repo" 'git status --short'; expect_rc 0 || return 1
  echo "the last good profile still decides"
}
check reload-broken-keeps-last-good t_broken
t_restore() {
  mark
  cat "$W/flow.good" > /etc/execgate/agents/flow.toml
  wait_for 10 has_since EXECGATE_EVENT=reload || fail "no reload record"
  agent flow "$repo" 'uname -s'; expect_rc 0
}
check reload-restored t_restore
fi

# ==========================================================================
if section watchdog; then
# (WatchdogSec=10s from the drop-in set up before the install.)
t_wd() {
  local pid n0 t0
  props execgated.service MainPID NRestarts WatchdogUSec
  pid=$P_MainPID n0=$P_NRestarts
  echo "WatchdogUSec $P_WatchdogUSec, MainPID $pid, NRestarts $n0"
  mark
  t0=$(date +%s)
  kill -STOP "$pid"    # the shell's builtin: no /bin/kill here
  wait_for 60 active_with_new_pid "$pid" || fail "not restarted: $(systemctl show -p ActiveState -p SubState -p MainPID execgated.service | tr '\n' ' ')"
  props execgated.service MainPID NRestarts
  echo "stopped pid $pid; after $(( $(date +%s) - t0 ))s MainPID $P_MainPID, NRestarts $P_NRestarts"
  [ "$P_NRestarts" -gt "$n0" ] || fail "NRestarts did not increase"
  journalctl -q -o cat --since "@$(( MARK / 1000000 ))" _PID=1 UNIT=execgated.service | grep -i 'watchdog' || fail "no watchdog timeout logged by systemd"
}
check watchdog-restarts-stopped-daemon t_wd
t_wd_after() { agent flow "$repo" 'git status --short'; expect_rc 0; }
check watchdog-sockets-work-after t_wd_after
fi

# ==========================================================================
if section crash; then
t_crash() {
  local pid n0 id sleep_pid
  agent_bg worker /srv/work 'sleep 62'
  wait_for 30 run_started 'sleep 62' || fail "run did not start"
  id=$(run_id 'sleep 62') sleep_pid=$(procs_of "$WORKER_UID" sleep | head -n 1)
  props execgated.service MainPID NRestarts
  pid=$P_MainPID n0=$P_NRestarts
  echo "run $id (sleep pid $sleep_pid) under daemon $pid; systemctl kill -s KILL"
  systemctl kill -s KILL execgated.service
  wait_for 30 active_with_new_pid "$pid" || fail "not restarted"
  wait "$BG"; echo "egsh exit $?: $(tr '\n' ' ' < "$W/bg.out")"
  props execgated.service MainPID NRestarts
  echo "restarted: MainPID $P_MainPID, NRestarts $P_NRestarts (was $n0)"
  [ "$P_NRestarts" -gt "$n0" ] || fail "NRestarts did not increase"
  CRASH_ID=$id
}
check crash-restarted t_crash
has_abort_record() { jall EXECGATE_EVENT=end EXECGATE_ID="$CRASH_ID" | grep -q '"EXECGATE_ABORTED":"1"'; }
t_crash_end() {
  wait_for 15 has_abort_record || fail "no abort end record for $CRASH_ID"
  jall EXECGATE_EVENT=end EXECGATE_ID="$CRASH_ID" > "$W/j"
  grep -q '"EXECGATE_ABORTED":"1"' "$W/j" || fail "end record lacks EXECGATE_ABORTED=1"
  echo "abort record: $(field MESSAGE < "$W/j") exit $(field EXECGATE_EXIT < "$W/j")"
}
check crash-abort-end-record t_crash_end
t_crash_clean() {
  [ -z "$(procs_of "$WORKER_UID")" ] || fail "worker processes left: $(procs_of "$WORKER_UID")"
  [ ! -e "$SVC_CG/runs/worker/$CRASH_ID" ] || fail "run cgroup left"
  [ -z "$(ls /var/lib/execgate/runs)" ] || fail "ledger entries left: $(ls /var/lib/execgate/runs)"
  echo "no process, no cgroup, no ledger entry left; runs/: $(ls $SVC_CG/runs 2>/dev/null | tr '\n' ' ')"
}
check crash-nothing-left t_crash_clean
fi

# ==========================================================================
if section stop; then
t_stop() {
  local id t0 rc
  agent_bg worker /srv/work 'sleep 63'
  wait_for 30 run_started 'sleep 63' || fail "run did not start"
  id=$(run_id 'sleep 63')
  systemctl stop execgated.socket execgated-admin.socket
  t0=$(date +%s)
  systemctl stop execgated.service || fail "stop failed"
  wait "$BG"; rc=$?
  echo "stopped in $(( $(date +%s) - t0 ))s; egsh exit $rc: $(tr '\n' ' ' < "$W/bg.out")"
  props execgated.service ActiveState Result
  [ "$P_ActiveState" = inactive ] || fail "service $P_ActiveState"
  [ "$P_Result" = success ] || fail "Result $P_Result"
  jall EXECGATE_EVENT=end EXECGATE_ID="$id" > "$W/j"
  grep -q . "$W/j" || fail "no end record for $id"
  echo "end: $(field MESSAGE < "$W/j")"
  jall EXECGATE_EVENT=admin EXECGATE_ID="$id" | grep -q 'shutdown kill' || fail "no shutdown kill admin record"
  [ ! -e "$SVC_CG" ] || [ -z "$(find "$SVC_CG" -mindepth 1 -type d)" ] || fail "cgroups left: $(find "$SVC_CG" -mindepth 1 -type d)"
  [ -z "$(procs_of "$WORKER_UID")" ] || fail "worker processes left"
  [ -z "$(procs_named execgated)" ] || fail "execgated still running"
}
check stop-with-run-in-flight t_stop
t_start() {
  systemctl start execgated.socket execgated-admin.socket || fail "sockets"
  systemctl start execgated.service || fail "start"
  agent flow "$repo" 'git status --short'; expect_rc 0
}
check stop-start-again t_start
fi

# ==========================================================================
if section hardening; then
MP=$(mainpid)
t_capbnd() {
  local b; b=$(awk '/^CapBnd:/ { print $2 }' "/proc/$MP/status")
  # CAP_CHOWN 0, DAC_OVERRIDE 1, FOWNER 3 (applying change sets), KILL 5,
  # SETGID 6, SETUID 7, SETPCAP 8, NET_ADMIN 12 (proxy-mode namespaces),
  # SYS_PTRACE 19, SYS_ADMIN 21: 0x2811eb. CAP_NET_RAW (13) is not in it.
  echo "daemon CapBnd $b"
  [ "$b" = 00000000002811eb ] || fail "want 00000000002811eb"
  [ $(( 0x$b >> 13 & 1 )) = 0 ] || fail "CAP_NET_RAW in the bounding set"
}
check hardening-capability-bounding-set t_capbnd
t_run_caps() { agent worker /srv/work 'grep -E "^Cap(Bnd|Eff)" /proc/self/status'; expect_rc 0 && expect_out 'CapBnd:	0000000000000000'; }
check hardening-run-no-capabilities t_run_caps
t_seccomp() {
  grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' "/proc/$MP/status"
  grep -q '^Seccomp:	2' "/proc/$MP/status" || fail "daemon has no seccomp filter"
  echo "outside: $(egvm-helper afs_syscall)"
  agent worker /srv/work 'egvm-helper afs_syscall'
  # ENOSYS without a filter; the sandbox's own denylist does not name it,
  # the unit's SystemCallFilter=~@obsolete does.
  expect_out 'afs_syscall errno=EPERM'
}
check hardening-system-call-filter t_seccomp
t_clock() {
  echo "outside: $(egvm-helper adjtimex)"
  agent worker /srv/work 'egvm-helper adjtimex'
  expect_out 'adjtimex errno=EPERM' || return 1
  agent worker /srv/work 'date -s @0'; [ "$RC" != 0 ] || fail "date -s worked"
}
check hardening-protect-clock t_clock
t_af() {
  echo "outside (root): $(egvm-helper packet)"
  agent worker /srv/work 'egvm-helper packet'
  expect_out 'packet errno=EAFNOSUPPORT'   # EPERM would be the missing capability
}
check hardening-restrict-address-families t_af
t_modules() {
  echo "outside: $(ls /lib/modules)"
  agent worker /srv/work 'ls /lib/modules'
  [ "$RC" != 0 ] || fail "/lib/modules readable in a run"
}
check hardening-protect-kernel-modules t_modules
t_protsys() {
  local m
  for m in /usr /boot /etc; do
    awk -v m=$m '$5 == m { print m, $6 }' "/proc/$MP/mountinfo" | tee "$W/m"
    grep -q "^$m ro" "$W/m" || fail "$m not read-only for the daemon"
  done
  agent worker /srv/work 'touch /etc/egvm-test 2>&1; echo rc=$?'
  [ ! -e /etc/egvm-test ] || fail "wrote /etc"
}
check hardening-protect-system-full t_protsys
t_uts() {
  echo "pid1 $(readlink /proc/1/ns/uts), daemon $(readlink /proc/$MP/ns/uts)"
  [ "$(readlink /proc/1/ns/uts)" != "$(readlink "/proc/$MP/ns/uts")" ] || fail "ProtectHostname: same uts namespace"
}
check hardening-protect-hostname t_uts
fi

# ==========================================================================
if section journal; then
t_jjson() {
  jall EXECGATE_EVENT=decision EXECGATE_AGENT=flow EXECGATE_DECISION=deny > "$W/j"
  grep '"EXECGATE_RULE":"flow.toml:14"' "$W/j" | grep -F '"EXECGATE_ARGV":"[\"git\",\"checkout\",\"flow/a11y-badge-recordings\"]"' > "$W/j1" || fail "no deny record for git checkout"
  for f in '"PRIORITY":"4"' '"SYSLOG_IDENTIFIER":"execgated"' '"_SYSTEMD_UNIT":"execgated.service"' \
           '"EXECGATE_ID":"' '"EXECGATE_UID":"'"$FLOW_UID"'"' '"EXECGATE_REASON":"FibreFlow changes' \
           '"EXECGATE_PROFILE_SHA256":"' '"EXECGATE_CWD":"/srv/fibreflow"'; do
    grep -qF "$f" "$W/j1" || fail "deny record lacks $f"
  done
  jall EXECGATE_EVENT=end EXECGATE_AGENT=flow | tail -n 1 > "$W/j2"
  for f in EXECGATE_EXIT EXECGATE_DURATION_MS EXECGATE_CPU_MS EXECGATE_MEM_PEAK EXECGATE_STDOUT_BYTES; do
    grep -q "\"$f\":\"" "$W/j2" || fail "end record lacks $f"
  done
  echo "journalctl -o json: $(jall | wc -l) execgated records; deny and end records carry their fields"
}
check journal-json-fields t_jjson
t_jcli() {
  execgate journal --agent flow --decision deny > "$W/jc" || fail "execgate journal failed"
  cat "$W/jc"
  grep -q 'flow DENY git checkout flow/a11y-badge-recordings \[flow.toml:14\]' "$W/jc" || fail "no checkout line"
  grep -q 'flow DENY npm run build \[flow.toml:19\]' "$W/jc" || fail "no npm run build line"
  grep -q 'flow DENY git commit' "$W/jc" || fail "no commit line"
  grep -q 'flow DENY cat .env' "$W/jc" || fail "no cat .env line"
  ! grep -q 'ALLOW\|worker' "$W/jc" || fail "filter let other records through"
}
check journal-execgate-cli t_jcli
fi

# ==========================================================================
if section fss; then
# The key was set up at the start (fss-setup-keys): every execgated record of
# this test went into a sealed file.
t_fss_verify() {
  local to rec
  journalctl --sync
  journalctl --rotate    # closes the file that holds the test's records
  FSS_FILE=$(grep -l -a 'flow/a11y-badge-recordings' "$JDIR"/system@*.journal | tail -n 1)
  [ -n "$FSS_FILE" ] || fail "no archived journal file holds the incident's records"
  journalctl --header --file "$FSS_FILE" | grep -E 'Compatible flags|Tag objects'
  journalctl --verify --verify-key="$FSSKEY" --file="$FSS_FILE" > "$W/v" 2>&1 || { cat "$W/v"; fail "verify failed on $FSS_FILE"; }
  cat "$W/v"
  grep -q '^PASS' "$W/v" || fail "no PASS"
  # The incident's deny record lies before the last seal.
  to=$(sed -n 's/.*Validated from .* to \(.*\), final .*/\1/p' "$W/v")
  rec=$(jall EXECGATE_EVENT=decision EXECGATE_DECISION=deny EXECGATE_AGENT=flow | head -n 1 | field __REALTIME_TIMESTAMP)
  [ -n "$to" ] && [ -n "$rec" ] && [ "$(date -d "$to" +%s)" -gt $(( rec / 1000000 )) ] || fail "the incident's records are not sealed (sealed to '$to', record at $rec)"
  journalctl --verify --verify-key="$FSSKEY" > "$W/vall" 2>&1 || { cat "$W/vall"; fail "verify of the whole journal failed"; }
  echo "verify with the key passes on the whole journal; the incident's records are sealed (to $to)"
}
check fss-verify-passes t_fss_verify
t_fss_wrongkey() {
  # The same key with its seed's first digit changed.
  local bad
  if [ "${FSSKEY:0:1}" = 0 ]; then bad=1${FSSKEY:1}; else bad=0${FSSKEY:1}; fi
  ! journalctl --verify --verify-key="$bad" --file="$FSS_FILE" > "$W/v" 2>&1 || { cat "$W/v"; fail "verify passed with a wrong key"; }
  tail -n 2 "$W/v"
}
check fss-verify-wrong-key-fails t_fss_wrongkey
t_fss_tamper() {
  local off copy=$W/tampered.journal
  cp "$FSS_FILE" "$copy"
  # Flip one byte of the incident's record (its argv) in the copy.
  off=$(grep -obUa 'flow/a11y-badge-recordings' "$copy" | head -n 1 | cut -d: -f1)
  [ -n "$off" ] || fail "record not found in the copy"
  printf 'X' | dd of="$copy" bs=1 seek="$off" conv=notrunc status=none
  cmp -l "$FSS_FILE" "$copy"
  journalctl --verify --verify-key="$FSSKEY" --file="$copy" > "$W/v" 2>&1 && { cat "$W/v"; fail "verify passed on the tampered copy"; }
  tail -n 3 "$W/v"
  journalctl --verify --verify-key="$FSSKEY" --file="$FSS_FILE" >/dev/null 2>&1 || fail "the original no longer verifies"
  echo "tampered copy fails verification; the original still passes"
}
check fss-tamper-detected t_fss_tamper
fi

# ==========================================================================
if [ "${EGVM_SHELL:-}" = 1 ]; then
  # VM_SHELL=1: a root shell on the console before the package goes away.
  say "EGVM shell (exit the shell to continue)"
  setsid -c -w bash -il < /dev/ttyS0 > /dev/ttyS0 2>&1
fi
section remove
t_remove() {
  dpkg -r execgate || fail "dpkg -r failed"
  dpkg-query -W -f '${Status}\n' execgate
  dpkg-query -W -f '${Status}' execgate | grep -q 'deinstall ok config-files' || fail "not in config-files state"
  for b in execgated execgate egsh; do [ ! -e "/usr/bin/$b" ] || fail "/usr/bin/$b left"; done
  for u in execgated.service execgated.socket execgated-admin.socket; do [ ! -e "/lib/systemd/system/$u" ] || fail "$u left"; done
  [ -f /etc/execgate/execgate.toml ] || fail "conffile removed by dpkg -r"
  [ -z "$(procs_named execgated)" ] || fail "execgated still running: $(procs_named execgated)"
  local st; st=$(systemctl is-active execgated.service execgated.socket execgated-admin.socket | tr '\n' ' ')
  echo "is-active after remove: $st"
  case " $st " in *" active "*|*" activating "*) fail "a unit is still active" ;; esac
  # RemoveOnStop=yes: the stopped socket units leave no dead socket files.
  for sock in /run/execgate/agent.sock /run/execgate/admin.sock; do
    [ ! -e "$sock" ] || fail "stale $sock left after dpkg -r"
  done
  echo "removed: binaries and units gone, no daemon, sockets down; execgate.toml kept"
}
check pkg-remove t_remove
t_purge() {
  local p left=
  # The admin's own files are not the package's: take them out first.
  rm -f /etc/execgate/agents/flow.toml /etc/execgate/agents/worker.toml
  dpkg -P execgate || fail "dpkg -P failed"
  dpkg-query -W -f '${Status}' execgate 2>/dev/null | grep -q 'installed\|config-files' && fail "still known to dpkg: $(dpkg-query -W -f '${Status}' execgate)"
  # Whatever the package listed must be gone, but for directories that
  # still hold other packages' files (/usr/bin, /lib/systemd/system...).
  while read -r p; do
    [ -e "$p" ] || [ -L "$p" ] || continue
    [ -d "$p" ] && [ -n "$(ls -A "$p")" ] && continue
    [ -d "$p" ] && dpkg -S "$p" >/dev/null 2>&1 && continue   # another package's (empty) directory
    left="$left $p"
  done < "$W/pkg-files"
  [ -z "$left" ] || fail "left after purge:$left"
  [ ! -e /etc/execgate ] || fail "/etc/execgate left: $(find /etc/execgate)"
  [ ! -e /usr/share/execgate ] || fail "/usr/share/execgate left"
  ls /etc/systemd/system/*/execgated* 2>/dev/null && fail "enablement links left"
  echo "purged: nothing of the package left; /var/lib/execgate $([ -e /var/lib/execgate ] && echo kept || echo gone), /var/log/execgate $([ -e /var/log/execgate ] && echo kept || echo gone), group execgate-admin $(getent group execgate-admin >/dev/null && echo kept || echo gone)"
}
check pkg-purge t_purge

t_subtree() {
  local after; after=$(subtree)
  # While the service runs, systemd itself enables every controller it
  # delegates on the way down (/ and system.slice); it takes them back when
  # no unit needs them. execgate enables its own only inside the service.
  echo "before: $SUBTREE_BEFORE"; echo "during (systemd's delegation): ${SUBTREE_DURING:-not seen}"; echo "after:  $after"
  [ "$after" = "$SUBTREE_BEFORE" ] || fail "subtree_control changed"
  [ ! -e /sys/fs/cgroup/execgate ] || fail "/sys/fs/cgroup/execgate exists"
  [ ! -e "$SVC_CG" ] || fail "$SVC_CG left"
}
check cgroup-nothing-outside-subtree t_subtree
section end

t_end=$(cut -d' ' -f1 /proc/uptime)
say "EGVM time scenario $(awk -v a="$t_begin" -v b="$t_end" 'BEGIN{printf "%.1f", b-a}')"
if [ "$NFAIL" != 0 ]; then
  # Context for the failures, on the console.
  journalctl -q -u execgated.service -n 80 --no-pager || true
fi
say "EGVM DONE failed=$NFAIL"
sync
exit 0
