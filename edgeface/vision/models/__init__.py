"""One module per model family, each a class that runs a model described by its card.

- ``blazeface.py``: :class:`BlazeFaceDetector` (MediaPipe BlazeFace short/full range): SSD anchors,
  box and keypoint decoding, the search over 90° rotations
- ``facemesh.py``: :class:`FaceMesh` (MediaPipe Face Mesh): 468 landmarks that refine alignment
- ``embedder.py``: :class:`Embedder`: aligned chips to L2-normalised vectors, with flip fusion

Another model of a known family is only a card; a new family is a module here, its name among the
card's ``detector.family`` choices (:mod:`~edgeface.vision.cards`), and wired in
:class:`~edgeface.vision.engine.Engine`.
"""
