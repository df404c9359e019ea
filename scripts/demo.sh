#!/usr/bin/env bash
# make demo: starts execgated on temporary directories with the example
# profiles, replays the flow incident through egsh as an unprivileged agent,
# checks that nothing forbidden happened, and shows the journal.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/bin
for b in execgated egsh execgate; do [ -x "$bin/$b" ] || { echo "demo: run make build first" >&2; exit 1; }; done
[ "$(id -u)" = 0 ] || { echo "demo: run as root (the daemon creates namespaces and cgroups)" >&2; exit 1; }

bold=$'\e[1m'; dim=$'\e[2m'; off=$'\e[0m'
[ -t 1 ] || { bold=; dim=; off=; }
AGENT_UID=65534   # nobody: the demo's stand-in for flow's account

# Not under /tmp: every run gets a private /tmp of its own.
T=$(mktemp -d /var/tmp/execgate-demo.XXXXXX)
chmod 755 "$T"
daemon=
cleanup() {
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT

# The production checkout flow was let loose on.
repo=$T/srv/fibreflow
mkdir -p "$repo/src"
cd "$repo"
git init -q -b main .
cat > package.json <<'JSON'
{ "name": "fibreflow", "scripts": { "test": "echo 'tests: 42 passed'", "build": "echo BUILT > dist.txt" } }
JSON
echo 'export const badge = 44;' > src/badge.ts
echo 'FIBREFLOW_API_TOKEN=ff_live_7Qx2sKc9VbN4' > .env
printf '.env\n' > .gitignore
git add -A && git -c user.name=dev -c user.email=dev@example.com commit -qm "initial"
echo 'export const touchTarget = 48;' >> src/badge.ts   # uncommitted work in progress
chown -R $AGENT_UID:$AGENT_UID "$repo"
cd "$root"

# Profiles: the example flow.toml bound to the demo uid and checkout. The
# schedule is dropped so the demo also runs outside office hours.
mkdir -p "$T/agents"
sed -e "s|^user = \"flow\"|uid = $AGENT_UID|" -e "s|/srv/fibreflow|$repo|g" \
    -e '/^\[schedule\]/,/^$/d' examples/flow.toml > "$T/agents/flow.toml"
cp examples/execgate.toml "$T/execgate.toml"

"$bin/execgated" --config "$T/execgate.toml" --agents "$T/agents" --run-dir "$T/run" \
  --state-dir "$T/state" --audit "file:$T/audit.jsonl" 2> "$T/daemon.log" &
daemon=$!
for _ in $(seq 100); do [ -S "$T/run/agent.sock" ] && break; sleep 0.05; done
[ -S "$T/run/agent.sock" ] || { cat "$T/daemon.log" >&2; exit 1; }

echo "${bold}== execgated on $T/run, agent flow = uid $AGENT_UID, profile examples/flow.toml${off}"
fails=0
agent() { # agent EXPECTED_EXIT SCRIPT: run SCRIPT as the agent through egsh
  local want=$1 script=$2 rc=0 out
  printf "%s\$ egsh -c '%s'%s\n" "$bold" "$script" "$off"
  out=$(cd "$repo" && setpriv --reuid=$AGENT_UID --regid=$AGENT_UID --clear-groups \
     env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 EXECGATE_SOCKET="$T/run/agent.sock" \
     "$bin/egsh" -c "$script" 2>&1) || rc=$?
  [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/   /'
  printf '   %s[exit %s]%s\n' "$dim" "$rc" "$off"
  [ "$rc" = "$want" ] || { echo "   demo: expected exit $want" >&2; fails=$((fails+1)); }
}

echo
echo "${bold}-- what flow did in the incident: every step is refused${off}"
agent 126 'git checkout flow/a11y-badge-recordings'
agent 126 'npm run build'
agent 126 'git add -A && git commit -m "WCAG touch target fixes"'
agent 126 'cat .env'
agent 126 "bash -c 'git checkout main'"
agent 126 'git -c alias.co=checkout co -b flow/x'

echo
echo "${bold}-- what a reviewer needs still works${off}"
agent 0 'git status --short'
agent 0 'git log --oneline -3'
agent 0 'ls -la src | grep badge'
agent 0 'npm test'

echo
echo "${bold}-- a run that writes more than [changes] max_files allows is held, not applied${off}"
script='for i in {1..250}; do echo "draft $i" > notes-$i.md; done; echo wrote 250 notes'
printf "%s\$ egsh -c '%s'%s\n" "$bold" "$script" "$off"
( cd "$repo" && setpriv --reuid=$AGENT_UID --regid=$AGENT_UID --clear-groups \
    env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 EXECGATE_SOCKET="$T/run/agent.sock" \
    "$bin/egsh" -c "$script" > "$T/held.out" 2>&1 || echo "exit $?" >> "$T/held.out" ) &
held=$!
admin() { EXECGATE_ADMIN_SOCKET="$T/run/admin.sock" "$bin/execgate" "$@"; }
id=
for _ in $(seq 200); do
  id=$(admin approvals -o json 2>/dev/null | sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p' | head -n 1)
  [ -n "$id" ] && break; sleep 0.05
done
if [ -z "$id" ]; then echo "   demo: the change set was not held" >&2; fails=$((fails+1)); else
  echo "   $ execgate changes $id | head -n 5"
  admin changes "$id" > "$T/changes.out" || true
  head -n 5 "$T/changes.out" | sed 's/^/   /'
  echo "   notes in the real tree while held: $(ls "$repo" | grep -c '^notes-' || true)"
  echo "   $ execgate reject $id"
  admin reject "$id" --reason "drafts belong in the PR, not in the tree" | sed 's/^/   /'
fi
wait "$held" || true
sed 's/^/   /' "$T/held.out"
grep -q '^exit 126$' "$T/held.out" || { echo "   demo: expected exit 126" >&2; fails=$((fails+1)); }
[ "$(ls "$repo" | grep -c '^notes-' || true)" = 0 ] || { echo "   demo: held notes reached the tree!" >&2; fails=$((fails+1)); }

echo
echo "${bold}-- afterwards${off}"
g() { git -c safe.directory='*' -C "$repo" "$@"; }
branch=$(g rev-parse --abbrev-ref HEAD)
branches=$(g branch --format='%(refname:short)' | tr '\n' ' ')
echo "   branch: $branch; branches: $branches"
[ "$branch" = main ] && [ "$branches" = "main " ] || { echo "   demo: the branch changed!" >&2; fails=$((fails+1)); }
[ ! -e "$repo/dist.txt" ] || { echo "   demo: a build ran!" >&2; fails=$((fails+1)); }
echo "   no build output, no new commit: $(g rev-list --count HEAD) commit(s)"

echo
echo "${bold}== the audit trail ($T/audit.jsonl)${off}"
echo "   $ execgate journal --file $T/audit.jsonl"
"$bin/execgate" journal --file "$T/audit.jsonl" | sed 's/^/   /'
echo "   $(grep -c . "$T/audit.jsonl") records in all (request, decision, start, exec, end, reload); -o json shows every field"
exit $fails
