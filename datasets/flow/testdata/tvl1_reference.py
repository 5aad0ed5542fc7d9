"""Reference TV-L1 flow for datasets/flow tests, from Debian's python3-opencv.

  /usr/bin/python3 tvl1_reference.py VIDEO WIDTH HEIGHT OUT

Decodes VIDEO at its own size with the ffmpeg CLI (rgb24 frames, which
tb::VideoReader reproduces byte for byte), converts each frame to grey with
cv2.COLOR_RGB2GRAY and runs cv2.optflow.DualTVL1OpticalFlow_create() with
OpenCV's default parameters on each consecutive pair. Writes the fields as
raw little-endian float32, [pairs, HEIGHT, WIDTH, 2] (x, y), to OUT.
Exits 3 when the optflow contrib module is missing.
"""
import subprocess
import sys

import numpy as np

try:
    import cv2
except ImportError:
    sys.exit(3)


def main():
    video, width, height, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    if not hasattr(cv2, "optflow"):
        sys.exit(3)
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", video, "-f", "rawvideo", "-pix_fmt",
         "rgb24", "-"], check=True, stdout=subprocess.PIPE).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
    fields = [tvl1.calc(a, b, None) for a, b in zip(grey[:-1], grey[1:])]
    np.asarray(fields, dtype="<f4").tofile(out)


if __name__ == "__main__":
    main()
