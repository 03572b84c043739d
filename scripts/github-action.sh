#!/usr/bin/env bash
# The check step of the GitHub Action (action.yml at the repository root), runnable anywhere:
# finds the migration files to lint in the git work tree it runs in and runs
# `ddlgate check --format github` on them, so each finding becomes an annotation on the file
# and line. Exits with ddlgate's code: 0 nothing rejected, 1 something rejected, 2 a usage,
# I/O or policy error (and 2 when git cannot say which files changed).
#
# Inputs, as environment variables (action.yml sets them from the action's inputs):
#   DDLGATE_BIN           the ddlgate binary (default: ddlgate on PATH)
#   INPUT_FILES           git pathspecs of the migration files, one per line (default: *.sql,
#                         which matches in every directory)
#   INPUT_CHANGED_ONLY    true: only files added, copied, modified or renamed since INPUT_BASE;
#                         false: every file that matches (default: true)
#   INPUT_BASE            the commit to compare with; empty or all zeros (a new branch):
#                         HEAD's parent, and every matching file when HEAD has none
#   INPUT_POLICY          a policy file (default: the built-in default policy)
#   INPUT_PG_VERSION      PostgreSQL major version the migrations run on
#   INPUT_ARGS            more arguments for `ddlgate check`, split at white space
#   GITHUB_OUTPUT         (set by GitHub) gets `checked=<number of files>`
#   GITHUB_STEP_SUMMARY   (set by GitHub) gets ddlgate's summary line
set -euo pipefail

bin=${DDLGATE_BIN:-ddlgate}
changed_only=${INPUT_CHANGED_ONLY:-true}
base=${INPUT_BASE:-}

specs=()
while IFS= read -r line; do
  line=${line#"${line%%[![:space:]]*}"}
  line=${line%"${line##*[![:space:]]}"}
  [ -n "$line" ] && specs+=("$line")
done <<< "${INPUT_FILES:-*.sql}"
if [ ${#specs[@]} -eq 0 ]; then
  specs=("*.sql")
fi

if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  echo "::error title=ddlgate::not inside a git work tree (check out the repository first, e.g. with actions/checkout)"
  exit 2
fi

case "$changed_only" in
  true | false) ;;
  *)
    echo "::error title=ddlgate::changed-only must be true or false, not '$changed_only'"
    exit 2
    ;;
esac

files=()
if [ "$changed_only" = true ]; then
  if [ -z "$base" ] || [[ "$base" =~ ^0+$ ]]; then
    base=$(git rev-parse -q --verify 'HEAD^' || true)
  fi
  if [ -n "$base" ] && ! git cat-file -e "$base^{commit}" 2>/dev/null; then
    # A shallow checkout (actions/checkout's default depth is 1) lacks the base commit.
    git fetch -q --depth=1 origin "$base" 2>/dev/null || true
  fi
  if [ -z "$base" ]; then
    echo "ddlgate: HEAD has no parent to compare with; checking every matching file"
    while IFS= read -r -d '' f; do files+=("$f"); done < <(git ls-files -z -- "${specs[@]}")
  elif ! git cat-file -e "$base^{commit}" 2>/dev/null; then
    echo "::error title=ddlgate::cannot find the base commit $base to compare with (check out with fetch-depth: 0, or set changed-only: false)"
    exit 2
  else
    while IFS= read -r -d '' f; do files+=("$f"); done \
      < <(git diff -z --name-only --no-renames --diff-filter=ACMR "$base" HEAD -- "${specs[@]}")
  fi
else
  while IFS= read -r -d '' f; do files+=("$f"); done < <(git ls-files -z -- "${specs[@]}")
fi

if [ -n "${GITHUB_OUTPUT:-}" ]; then
  echo "checked=${#files[@]}" >> "$GITHUB_OUTPUT"
fi
if [ ${#files[@]} -eq 0 ]; then
  echo "ddlgate: no migration files to check"
  exit 0
fi

args=(check --format github)
[ -n "${INPUT_POLICY:-}" ] && args+=(--policy "$INPUT_POLICY")
[ -n "${INPUT_PG_VERSION:-}" ] && args+=(--pg-version "$INPUT_PG_VERSION")
if [ -n "${INPUT_ARGS:-}" ]; then
  read -r -a extra <<< "$INPUT_ARGS"
  args+=("${extra[@]}")
fi

echo "ddlgate: checking ${#files[@]} file(s): ${files[*]}"
report=$(mktemp)
trap 'rm -f "$report"' EXIT
status=0
"$bin" "${args[@]}" -- "${files[@]}" | tee "$report" || status=${PIPESTATUS[0]}
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  summary=$(grep -v '^::' "$report" | tail -n 1 || true)
  echo "ddlgate check: ${summary:-no summary} (exit $status)" >> "$GITHUB_STEP_SUMMARY"
fi
exit "$status"
