"""Frames and visual statistics of one music-video clip, and the static filter.

One job per module: ``decode`` (PyAV decoding at working size, ``VideoDecodeError``), ``faces``
(the Haar face detector, shared with the sample-corpus renderer), ``frame_stats`` (what is
measured on one frame and between two), ``shots`` (cuts and dense motion measures from
thumbnails), ``analysis`` (``analyse_video``, assembling ``VisualStats``) and ``static``
(``static_decision``, the keep/drop decision with a human-readable reason).
"""

from builders.video.analysis import analyse_video
from builders.video.decode import VideoDecodeError
from builders.video.faces import detect_faces
from builders.video.static import static_decision

__all__ = ["VideoDecodeError", "analyse_video", "detect_faces", "static_decision"]
