#!/bin/sh
# errcheck: no error is ignored without a reason. Calls listed in
# .errcheck-excludes are accepted; anything else unchecked fails, and is
# handled or discarded in the code with `_ =` and a comment. In package
# supervisor the audit rule holds: a record that gates an action goes
# through record (its error is checked), any other through note. Tests are
# not checked. Usage: scripts/errcheck.sh [PACKAGES] (default ./...).
set -eu
cd "$(dirname "$0")/.."
[ "$#" -gt 0 ] || set -- ./...
exec ${GO:-go} run github.com/kisielk/errcheck@v1.9.0 -ignoretests -exclude .errcheck-excludes "$@"
