#!/usr/bin/env bash
# The image's binary, built as `docker build .` builds it, without Docker: the build
# context that .dockerignore lets through, the build stage's COPY lines into an empty
# WORKDIR, then the build stage's `cargo build`. A Dockerfile or .dockerignore that leaves
# out what cargo needs (a declared target's file, an embedded file) fails here as it would
# in `docker build`; tests/run.sh runs it, and so CI.
#
# Usage: tests/image.sh OUT_DIR
#   writes OUT_DIR/nsguard (the binary the runtime image holds) and builds in
#   OUT_DIR/context (kept, so a second run is incremental). The real-cluster suite puts
#   that binary into the node's image (what gcr.io/distroless/cc-debian12 adds to it is
#   glibc and libgcc: `ldd` names them).
#
# Reads only the simple forms the repository uses, and refuses any other, so that a change
# it cannot follow fails loudly instead of checking something else:
#   .dockerignore  `*` then `!PATH` lines (an allow-list); comments and blank lines
#   Dockerfile     the first stage: `WORKDIR /DIR`, `COPY SRC... DEST` (no --from), one
#                  `RUN cargo build ... && ...` (the part before `&&` is run)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 1 ] || { echo "usage: tests/image.sh OUT_DIR" >&2; exit 2; }
out=$(realpath -m "$1")
context=$out/context
fail() { echo "tests/image.sh: $*" >&2; exit 1; }

# The context: an allow-list.
allowed=()
first=1
while IFS= read -r line || [ -n "$line" ]; do
  line=${line%%#*}
  line=$(printf '%s' "$line" | tr -d '[:space:]')
  [ -n "$line" ] || continue
  if [ "$first" = 1 ]; then
    [ "$line" = '*' ] || fail ".dockerignore must start with '*' (an allow-list); found '$line'"
    first=0
    continue
  fi
  case $line in
    '!'*) allowed+=("${line#!}") ;;
    *) fail ".dockerignore: only '!PATH' lines may follow '*'; found '$line'" ;;
  esac
done < .dockerignore
[ ${#allowed[@]} -gt 0 ] || fail ".dockerignore lets nothing through"
in_context() { # PATH: whether PATH, or a folder above it, is let through
  local p=${1#./} a
  for a in "${allowed[@]}"; do
    a=${a#./}; a=${a%/}
    case $p in "$a" | "$a"/*) return 0 ;; esac
  done
  return 1
}

# The build stage: from the first FROM to the next.
stage=$(awk '/^FROM /{n++} n==1' Dockerfile)
workdir=$(sed -n 's/^WORKDIR //p' <<< "$stage" | tail -1)
[ -n "$workdir" ] || fail "the build stage has no WORKDIR"
rm -rf "$context.new"
mkdir -p "$context.new"
while read -r instruction rest; do
  case $instruction in
    COPY)
      case $rest in --*) fail "COPY with a flag is not read here: COPY $rest" ;; esac
      read -r -a words <<< "$rest"
      dest=${words[-1]}
      unset 'words[-1]'
      for src in "${words[@]}"; do
        in_context "$src" || fail "the Dockerfile copies '$src', which .dockerignore leaves out of the build context"
        [ -e "$src" ] || fail "the Dockerfile copies '$src', which does not exist"
        case $dest in
          */) mkdir -p "$context.new/$dest"; cp -a "$src" "$context.new/$dest" ;;
          *) mkdir -p "$(dirname "$context.new/$dest")"; cp -a "$src" "$context.new/$dest" ;;
        esac
      done
      ;;
    RUN)
      build=${rest%%&&*}
      case $build in "cargo build "*) ;; *) fail "the build stage's RUN is not 'cargo build ...': RUN $rest" ;; esac
      case $build in *--locked*) ;; *) fail "the image's cargo build must be --locked: $build" ;; esac
      ;;
  esac
done <<< "$stage"
[ -n "${build:-}" ] || fail "the build stage runs no cargo build"

# Replace the context, keeping the build's target folder (and so its incremental state:
# cp -a kept the files' times).
if [ -d "$context/target" ]; then mv "$context/target" "$context.new/target"; fi
rm -rf "$context"
mv "$context.new" "$context"
echo "==> the Docker build context ($(find "$context" -path "$context/target" -prune -o -type f -print | wc -l) files): $build"
read -r -a command <<< "$build"
(cd "$context" && "${command[@]}")
cp "$context/target/release/nsguard" "$out/nsguard"
echo "==> $out/nsguard ($(du -h "$out/nsguard" | cut -f1))"
