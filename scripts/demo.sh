#!/usr/bin/env bash
# make demo: replays the flow incident against examples/flow.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
eg=bin/execgate
[ -x "$eg" ] || { echo "demo: run make build first" >&2; exit 1; }

bold=$'\e[1m'; off=$'\e[0m'
[ -t 1 ] || { bold=; off=; }

echo "${bold}== execgate lint examples/${off}"
$eg lint --config examples/execgate.toml examples/ 2>&1 | sed 's/^/   /'

echo
echo "${bold}== The flow incident, replayed against examples/flow.toml${off}"
replay() {
  local rc=0
  out=$($eg check --config examples/execgate.toml --agents examples --agent flow -- "$1" 2>/dev/null) || rc=$?
  printf '%s$ %s%s\n' "$bold" "$1" "$off"
  printf '%s\n' "$out" | tail -n 1 | sed 's/^=> /   /'
  return $rc
}
fails=0
for s in \
  'git checkout flow/a11y-badge-recordings' \
  'npm run build' \
  'git add -A && git commit -m "WCAG touch target fixes"' \
  'cat .env' \
  "bash -c 'git checkout main'" \
  'git -c alias.co=checkout co -b x' \
  'find . -maxdepth 0 -exec git checkout -b x \;'; do
  rc=0; replay "$s" || rc=$?
  [ "$rc" = 1 ] || { echo "   demo: expected a denial (exit 1), got exit $rc" >&2; fails=$((fails+1)); }
done
for s in 'git status' 'git log --oneline -3' 'npm test' 'ls -la | grep src'; do
  rc=0; replay "$s" || rc=$?
  [ "$rc" = 0 ] || { echo "   demo: expected allow (exit 0), got exit $rc" >&2; fails=$((fails+1)); }
done

echo
echo "${bold}== Why: every invocation with its rule${off}"
$eg check --config examples/execgate.toml --agents examples --agent flow -- \
  'git status && env FOO=1 timeout 5 npm run build' 2>/dev/null | sed 's/^/   /' || true
exit $fails
