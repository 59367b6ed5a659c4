#!/usr/bin/env bash
# Time a command and record it in results/build-times.json (with the date, the commit and this machine's CPU),
# then rewrite the README's generated blocks. Usage, from the repository root:
#   scripts/timed.sh "fresh-clone make book" make book
#   scripts/timed.sh "fresh-clone make test" make test
# The time is recorded only if the command succeeds; its exit status is returned either way.
set -u
what="$1"; shift
start=$(date +%s.%N)
"$@"
status=$?
end=$(date +%s.%N)
if [ "$status" -eq 0 ]; then
  py=.venv/bin/python; [ -x "$py" ] || py=python3
  "$py" scripts/readme_figures.py --record-build "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')" --what "$what"
else
  echo "timed.sh: '$*' failed (status $status): nothing recorded" >&2
fi
exit "$status"
