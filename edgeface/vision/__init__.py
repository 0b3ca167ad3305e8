"""The recognition chain, by role: image in, faces, quality, aligned chips and embeddings out.

Nothing is imported here (import the module you need); models load lazily into an :class:`Engine`.

=========================  =======================================================================
``engine.py``              :class:`Engine`: detector, quality gate, alignment and embedder behind one
                           object the caller owns (one per thread); models load on first use
``imageio.py``             ``load_image`` / ``save_image``: strict decoding, size limits, EXIF orientation
``faces.py``               :class:`Face`: box, keypoints, score, rotation (what every stage passes on)
``geometry.py``            IoU and NMS, turning images and points by multiples of 90°, mapping boxes
                           back, the least-squares similarity transform
``align.py``               the chip warp: keypoints (or dense landmarks) onto the embedder's template
``quality.py``             the quality gate (score, size, sharpness, pose) and head-pose estimation
``calibration.py``         1:N decision thresholds from the embedder card's impostor statistics
``cards.py``               model cards, typed per task: detector, embedder (+ alignment, embedding space),
                           landmarks; ``[variant]`` cards (another runtime's form of a reference model)
``variants.py``            writing a variant card with its fidelity measured against the reference
``models/blazeface.py``    BlazeFace: SSD anchors, box decoding, search over rotations
``models/facemesh.py``     MediaPipe Face Mesh: dense landmarks that refine alignment
``models/embedder.py``     the embedder: aligned chips to L2-normalised vectors, flip fusion
``runtime/``               the TFLite layer: interpreter loader, ``TFLiteModel``, quantization, the
                           inference backends (CPU, Edge TPU, GPU, external delegate) as one table, the
                           backend of each model with its CPU fallback (``select.py``), a model's
                           operators (``oplist.py``) and the Edge TPU operator check (``edgetpu.py``)
=========================  =======================================================================

Dependencies point one way: ``engine`` uses the models, ``align`` and ``quality``; the models use
``cards``, ``geometry``, ``faces`` and ``runtime``. This package imports nothing of edgeface but
``config``, ``errors`` and ``logs``; the gallery, daemon, server and CLI build on it.
"""
