#!/usr/bin/env bash
# Compiles common, agent and aggregator with clang 16's thread-safety analysis
# as errors (-Wthread-safety -Werror, -fsyntax-only: no objects, no link), from the compile commands
# of an existing (g++) build directory, whose generated headers it reuses. Part of scripts/test.sh;
# the annotations are in common/include/outpost/common/thread_annotations.h.
#
# Usage: scripts/thread-safety.sh [BUILD_DIR]     (default build; it must have been built)
# Env:   JOBS (default nproc), CLANGXX (default clang++-16)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
JOBS=${JOBS:-$(nproc)}
CLANGXX=${CLANGXX:-clang++-16}

if ! command -v "$CLANGXX" >/dev/null; then
  echo "thread-safety: $CLANGXX not found (scripts/deps.sh installs clang-16)" >&2
  exit 2
fi
if [[ ! -f "$BUILD_DIR/compile_commands.json" || ! -d "$BUILD_DIR/generated" ]]; then
  echo "thread-safety: $BUILD_DIR has no compile_commands.json or generated headers; build it first" >&2
  exit 2
fi

# One line per translation unit: the g++ command with clang in its place, no output file, and the
# flags clang needs: libstdc++ 12 hides <expected> unless __cpp_concepts >= 202002L, which clang 16
# supports but does not claim (docs/fuzzing.md); g++-only warning options are ignored; librdkafka's
# RD_KAFKA_V_* macros are GNU statement expressions, which -Wpedantic flags in clang only.
python3 - "$BUILD_DIR/compile_commands.json" "$PWD" "$CLANGXX" >"$BUILD_DIR/thread-safety.cmds" <<'EOF'
import json, shlex, sys
db, root, clangxx = sys.argv[1], sys.argv[2] + "/", sys.argv[3]
seen = set()
for e in json.load(open(db)):
    f = e["file"]
    rel = f[len(root):] if f.startswith(root) else ""
    if not rel.split("/")[0] in ("common", "agent", "aggregator") or f in seen:
        continue
    seen.add(f)
    args = shlex.split(e["command"]) if "command" in e else e["arguments"]
    out, skip = [clangxx], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a == "-o":
            skip = True
        elif a == "-std=c++23":
            out.append("-std=c++2b")  # clang 16's name for it
        elif a != "-c" and a != f:
            out.append(a)
    out += ["-fsyntax-only", "-Wthread-safety", "-Werror", "-Wno-unknown-warning-option",
            "-Wno-gnu-statement-expression-from-macro-expansion",
            "-U__cpp_concepts", "-D__cpp_concepts=202002L", f]
    print("cd " + shlex.quote(e["directory"]) + " && " + shlex.join(out))
EOF

n=$(wc -l <"$BUILD_DIR/thread-safety.cmds")
t=$SECONDS
log="$BUILD_DIR/thread-safety.log"
# A unit's diagnostics are printed in one piece; xargs fails if any unit failed.
if ! tr '\n' '\0' <"$BUILD_DIR/thread-safety.cmds" |
  xargs -0 -P "$JOBS" -n 1 sh -c 'out=$(eval "$1" 2>&1) || { printf "%s\n" "$out"; exit 1; }' sh \
    >"$log" 2>&1; then
  cat "$log" >&2
  echo "thread-safety: FAILED ($n translation units, $((SECONDS - t)) s; log $log)" >&2
  exit 1
fi
echo "thread-safety: $n translation units clean under $CLANGXX -Wthread-safety -Werror ($((SECONDS - t)) s)"
