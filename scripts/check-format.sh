#!/usr/bin/env bash
# clang-format check of the C sources, run by tests/run-all.sh:
#
#   scripts/check-format.sh            # every tracked *.c / *.h
#   scripts/check-format.sh FILE...    # only these
#   scripts/check-format.sh --fix ...  # reformat instead of checking
#
# The style is .clang-format at the root. Versions of clang-format format
# some constructs differently, so the check uses clang-format-14 (Debian
# bookworm's, installed by scripts/setup-deps.sh) when it is there.
# Exit status 0 when every file is formatted, 1 with the list otherwise.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2

fix=0
if [ "${1:-}" = --fix ]; then
  fix=1
  shift
fi
cf=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$cf" ]; then
  echo "check-format: clang-format is not installed (apt-get install -y clang-format)" >&2
  exit 2
fi
files=("$@")
if [ ${#files[@]} -eq 0 ] && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.c' '*.h' | grep -v '^tests/fuzz/corpus/')
fi
if [ ${#files[@]} -eq 0 ]; then # not a git checkout
  mapfile -t files < <(find . -path ./tests/fuzz/corpus -prune -o -path './build*' -prune -o \
    -path './.git' -prune -o -type f \( -name '*.c' -o -name '*.h' \) -print | sed 's|^\./||' | sort)
fi

if [ "$fix" = 1 ]; then
  "$cf" -i "${files[@]}"
  exit $?
fi
bad=()
for f in "${files[@]}"; do
  "$cf" --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  for f in "${bad[@]}"; do
    echo "$f: not formatted as .clang-format says; first differences:"
    "$cf" "$f" | diff -u "$f" - | sed -n '3,14p' | sed 's/^/    /'
  done
  echo "check-format: ${#bad[@]} of ${#files[@]} files drift ($("$cf" --version | sed 's/.*version //'));" \
    "fix with: scripts/check-format.sh --fix ${bad[*]}"
  exit 1
fi
echo "check-format: ${#files[@]} files formatted ($("$cf" --version | sed 's/.*version //'))"
