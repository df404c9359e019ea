#!/usr/bin/env bash
# make deb: builds bin/deb/execgate_VERSION_amd64.deb with nfpm from the
# binaries `make build` put in bin/, the units in systemd/ and the
# examples; packaging/ holds nfpm.yaml, the maintainer scripts, the
# copyright and the changelog template. Then lintian checks the package
# (LINTIAN=0 skips it) and must find no errors.
#
# nfpm runs as `go run github.com/goreleaser/nfpm/v2/cmd/nfpm@VERSION`
# from outside the module, so go.mod and go.sum are not touched.
#
# The version comes from git: the tag when HEAD is tagged vX.Y.Z, else
# X.Y.Z+git<commit date>.<hash> after the latest such tag, else
# 0.0~git<commit date>.<hash>; "+dirty" when tracked files differ from
# HEAD. Outside git it is $DEB_FALLBACK_VERSION. $DEB_VERSION overrides it.
set -euo pipefail

GO=${GO:-go}
command -v "$GO" >/dev/null 2>&1 || PATH=/usr/local/go/bin:$PATH
NFPM=${NFPM:-github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2}
DEB_FALLBACK_VERSION=${DEB_FALLBACK_VERSION:-0.0~nogit}
DEB_RELEASE=${DEB_RELEASE:-1}
MAINTAINER=${DEB_MAINTAINER:-execgate maintainers <execgate@example.org>}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bins=(execgated execgate egsh)
for b in "${bins[@]}"; do
  [ -x "bin/$b" ] || { echo "deb: bin/$b is missing: run make build (or make deb)" >&2; exit 1; }
done

# --- version, commit and a reproducible timestamp
commit=
if [ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$root" ] &&
  commit=$(git rev-parse --short=7 HEAD 2>/dev/null); then
  epoch=$(git log -1 --format=%ct HEAD)
  day=$(date -u -d "@$epoch" +%Y%m%d)
  if tag=$(git describe --tags --exact-match --match 'v[0-9]*' HEAD 2>/dev/null); then
    version=${tag#v}
  elif tag=$(git describe --tags --abbrev=0 --match 'v[0-9]*' HEAD 2>/dev/null); then
    version=${tag#v}+git$day.$commit
  else
    version=0.0~git$day.$commit
  fi
  if ! git diff --quiet HEAD -- 2>/dev/null; then
    version=$version+dirty
  fi
else
  commit=
  epoch=${SOURCE_DATE_EPOCH:-$(date +%s)}
  version=$DEB_FALLBACK_VERSION
fi
version=${DEB_VERSION:-$version}
# Debian upstream versions: digits first, then [A-Za-z0-9.+~] (a tag's
# "-rc1" becomes "~rc1", which sorts before the release).
version=$(printf '%s' "$version" | sed 's/-/~/g')
case $version in
  [0-9]*) ;;
  *) echo "deb: version $version does not start with a digit" >&2; exit 1 ;;
esac
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$epoch}
full=$version-$DEB_RELEASE

# --- staging: the package's tree, as nfpm.yaml names it
stage=$(mktemp -d "${TMPDIR:-/tmp}/execgate-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
install -d "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/usr/lib/sysusers.d" \
  "$stage/usr/lib/tmpfiles.d" "$stage/etc/execgate" "$stage/usr/share/execgate/examples" \
  "$stage/usr/share/doc/execgate" "$stage/usr/share/man/man1" "$stage/usr/share/man/man8" \
  "$stage/packaging"
for b in "${bins[@]}"; do
  install -m 0755 "bin/$b" "$stage/usr/bin/$b"
  # What dh_strip does to an executable: no symbols, no debug info
  # (Go's own tables, which its stack traces use, stay).
  strip --remove-section=.comment --remove-section=.note "$stage/usr/bin/$b"
done
for u in execgated.service execgated.socket execgated-admin.socket; do
  sed 's|/usr/local/bin/|/usr/bin/|g' "systemd/$u" > "$stage/lib/systemd/system/$u"
done
if grep -n '/usr/local' "$stage"/lib/systemd/system/*; then
  echo "deb: the units above still name /usr/local" >&2; exit 1
fi
install -m 0644 systemd/execgate.sysusers.conf "$stage/usr/lib/sysusers.d/execgate.conf"
install -m 0644 systemd/execgate.tmpfiles.conf "$stage/usr/lib/tmpfiles.d/execgate.conf"
install -m 0644 examples/execgate.toml "$stage/etc/execgate/execgate.toml"
install -m 0644 examples/*.toml "$stage/usr/share/execgate/examples/"
install -m 0644 packaging/copyright "$stage/usr/share/doc/execgate/copyright"
date=$(LC_ALL=C date -u -R -d "@$SOURCE_DATE_EPOCH")
from="a tree outside git"
[ -z "$commit" ] || from="git commit $commit"
sed -e "s|@VERSION@|$full|" -e "s|@FROM@|$from|" -e "s|@MAINTAINER@|$MAINTAINER|" \
  -e "s|@DATE@|$date|" packaging/changelog | gzip -9n > "$stage/usr/share/doc/execgate/changelog.Debian.gz"
for m in packaging/*.[18]; do
  [ -e "$m" ] || continue
  sec=${m##*.}
  name=$(basename "$m")
  gzip -9n < "$m" > "$stage/usr/share/man/man$sec/$name.gz"
done
install -D -m 0644 packaging/lintian-overrides "$stage/usr/share/lintian/overrides/execgate"
install -m 0755 packaging/postinst packaging/prerm packaging/postrm "$stage/packaging/"
cp packaging/nfpm.yaml "$stage/packaging/nfpm.yaml"

# --- Depends: what dpkg-shlibdeps finds the binaries need (it wants a
# debian/control to read), else what bookworm's builds need.
shlibs="libc6 (>= 2.34), libseccomp2 (>= 2.5.0)"
if command -v dpkg-shlibdeps >/dev/null 2>&1; then
  mkdir -p "$stage/shl/debian"
  printf 'Source: execgate\n\nPackage: execgate\nArchitecture: any\n' > "$stage/shl/debian/control"
  if out=$(cd "$stage/shl" && dpkg-shlibdeps -O "${bins[@]/#/$stage/usr/bin/}" 2>/dev/null); then
    shlibs=${out#shlibs:Depends=}
  fi
  rm -rf "$stage/shl"
fi

# --- nfpm
out="$root/bin/deb"
rm -rf "$out"
mkdir -p "$out"
deb="$out/execgate_${full}_amd64.deb"
echo "deb: building $(basename "$deb") (Depends: $shlibs)"
(
  cd "$stage"
  export GOWORK=off GO111MODULE=on GOFLAGS=-mod=mod
  export EXECGATE_DEB_VERSION=$version EXECGATE_DEB_RELEASE=$DEB_RELEASE \
    EXECGATE_DEB_MAINTAINER=$MAINTAINER EXECGATE_DEB_SHLIBS=$shlibs
  "$GO" run "$NFPM" package --config packaging/nfpm.yaml --packager deb --target "$deb"
) >&2
[ -f "$deb" ] || { echo "deb: nfpm made no $deb" >&2; exit 1; }

if [ "${LINTIAN:-1}" != 0 ] && command -v lintian >/dev/null 2>&1; then
  echo "deb: lintian $(basename "$deb")" >&2
  lintian --fail-on error "$deb" >&2
fi
echo "$deb"
