#!/usr/bin/env bash
# make test-accounts: the decision packages' tests must pass whatever
# accounts the host has. Runs them twice, each time in a private mount
# namespace whose /etc/passwd and /etc/group are copies bind-mounted over
# the real ones (nothing on the host changes): once with accounts flow,
# builder and reviewer (the example profiles' users; flow takes uid 4242,
# which the tests' own profiles use), and once with none of them.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
pkgs=(./policy ./profiles ./shellparse)
[ "$(id -u)" = 0 ] || { echo "accounts-test: run as root (it uses unshare --mount)" >&2; exit 1; }

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
names='^(flow|builder|reviewer):'
mkdir -p "$T/with" "$T/without"
grep -Ev "$names" /etc/passwd > "$T/without/passwd" || true
grep -Ev "$names" /etc/group > "$T/without/group" || true
cp "$T/without/passwd" "$T/without/group" "$T/with/"
for a in flow:4242 builder:4243 reviewer:4244; do
  n=${a%%:*} id=${a#*:}
  echo "$n:x:$id:$id:execgate test agent:/home/$n:/bin/sh" >> "$T/with/passwd"
  echo "$n:x:$id:" >> "$T/with/group"
done

for variant in with without; do
  echo "== go test ${pkgs[*]} $variant accounts flow, builder and reviewer"
  unshare --mount --propagation private -- sh -ec '
    d=$1; shift
    mount --bind "$d/passwd" /etc/passwd
    mount --bind "$d/group" /etc/group
    for n in flow builder reviewer; do
      if getent passwd "$n" >/dev/null; then echo "   account $n: $(getent passwd "$n")"; else echo "   account $n: none"; fi
    done
    exec "$@"' sh "$T/$variant" "$GO" test -count=1 "${pkgs[@]}"
done
