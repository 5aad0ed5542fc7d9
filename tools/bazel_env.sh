# Sourced by the project's scripts: installs missing packages, enables the
# shared disk cache, and defines `bz` (bazel with a bounded server lifetime).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/install_deps.sh
DISK_CACHE="${TB_DISK_CACHE:-$HOME/.cache/timebalance-bazel-disk}"
mkdir -p "$DISK_CACHE"
# The server exits by itself 5 minutes after the last command, so no Bazel
# server outlives a CI run for long; scripts also shut it down at the end.
# Startup options (--output_base=...) may precede the command.
bz() {
  local startup=()
  while [[ $# -gt 0 && "$1" == --* ]]; do startup+=("$1"); shift; done
  bazel --max_idle_secs=300 "${startup[@]}" "$1" --disk_cache="$DISK_CACHE" "${@:2}"
}
