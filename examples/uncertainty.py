"""Which landmarks is the network unsure about, and in which direction? (single image, no smoothing)

    python examples/uncertainty.py photo.jpg
"""
import sys

import cv2
import numpy as np

from star_track import Tracker


def main(path: str) -> None:
    image = cv2.imread(path)
    if image is None:
        sys.exit(f"cannot read {path}")
    with Tracker() as tracker:
        faces = tracker.detect_image(image)
    if not faces:
        sys.exit(f"{path}: no face found")
    for face in faces:
        # Eigen-decomposition of each landmark's calibrated 2x2 error covariance (face.star_covariance is the raw
        # heatmap spread): the major axis is the ambiguous direction, its sd the expected error along it.
        lam, vec = np.linalg.eigh(face.covariance.astype(np.float64))
        major_sd = np.sqrt(lam[:, 1])
        worst = np.argsort(major_sd)[::-1][:5]
        print(f"face {face.track_id}: score {face.score:.2f}, expected error {100 * face.expected_error:.1f} % "
              "of the eye distance")
        for i in worst:
            dx, dy = vec[i, :, 1]
            print(f"  landmark {i:2d} ({tracker.scheme.names[i]}): sd {major_sd[i]:.1f} px along "
                  f"{np.degrees(np.arctan2(dy, dx)) % 180:.0f} deg, elongation {np.sqrt(lam[i, 1] / lam[i, 0]):.1f}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python examples/uncertainty.py photo.jpg")
    main(sys.argv[1])
