"""Face detection and 68-point landmarks per frame with dlib's offline models.

dlib's HOG detector and 68-point shape predictor ship in PyPI ``face-recognition-models``
(with the prebuilt ``dlib-bin``): no download at run time, and the 68-point scheme is the
one auto_avsr's alignment (eyes, nose, mouth corners) is defined on.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

MOUTH = slice(48, 68)
# Points that move little while speaking: nose bridge/tip, eye corners (auto_avsr also uses
# mouth corners; we leave them out so speech does not pull the alignment).
STABLE_POINTS = [27, 28, 29, 30, 31, 33, 35, 36, 39, 42, 45]
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)

INSTALL_HINT = "pip install dlib-bin face-recognition-models  (or: pip install 'avsr_sinks[prepare]')"


def shape_predictor_path() -> Path:
    """Locate the 68-point model inside ``face-recognition-models`` without importing it
    (its __init__ needs ``pkg_resources``, which recent setuptools dropped)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"face-recognition-models is not installed: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall face-recognition-models")
    return path


class LandmarkDetector:
    """dlib frontal face detector + 68-point predictor; one instance per worker process."""

    def __init__(self, upsample: int = 1):
        try:
            import dlib
        except ImportError as err:
            raise ImportError(f"dlib is not installed: {INSTALL_HINT}") from err
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(shape_predictor_path()))
        self.upsample = upsample  # small faces (LRS2 is 160x160) need one upsampling to be found
        self._rect = dlib.rectangle

    def __call__(self, frame_rgb: np.ndarray) -> np.ndarray | None:
        """Landmarks [68, 2] (x, y) of the largest face in a uint8 RGB frame, or None."""
        faces = self.detector(frame_rgb, self.upsample)
        if len(faces) == 0:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        shape = self.predictor(frame_rgb, face)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)

    def detect_all(self, frames_rgb: np.ndarray) -> list[np.ndarray | None]:
        """Landmarks for every frame (None where no face was found)."""
        return [self(frame) for frame in frames_rgb]
