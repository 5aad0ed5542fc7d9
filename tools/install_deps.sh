#!/usr/bin/env bash
# Installs every Debian package this project needs to build, test and run.
# Idempotent and quiet: packages already present are not touched, and apt is
# only consulted when something is missing. Must run as root (or via sudo).
set -euo pipefail

PACKAGES=(
  bazel-bootstrap          # Bazel 4.2.3
  build-essential pkg-config
  libtorch-dev             # LibTorch 1.13.1 (CPU)
  libgloo-dev              # headers c10d's ProcessGroupGloo includes
  libabsl-dev libgflags-dev libgoogle-glog-dev
  libprotobuf-dev protobuf-compiler
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  libgtest-dev libgmock-dev
  zlib1g-dev               # compressed optical-flow files (datasets/flow)
  libopencv-contrib-dev libopencv-dev  # TV-L1 flow (optflow), opencv4.pc
  libopenblas0-pthread     # replaces the reference BLAS (~30x faster matmul)
  libgoogle-perftools-dev  # tcmalloc, the binaries' allocator (third_party/BUILD)
  ffmpeg                   # CLI, used by tests to cross-check the decoder
  python3-torch python3-torchvision   # reference values in tests
  python3-crc32c           # independent TFRecord CRC check in core:event_writer_test
  python3-opencv           # TV-L1 reference values in datasets/flow tests
  clang-14 libfuzzer-14-dev  # libFuzzer targets (tools/fuzz.sh, --config=fuzz)
  chromium                 # headless: //tests:report_browser_test renders the HTML report
  python3-pil              # reads that test's screenshot
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install_deps: installing ${#missing[@]} package(s): ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install_deps: done" >&2
