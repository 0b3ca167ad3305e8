"""Conversion of the Apache-2.0 MobileFaceNet (foamliu/MobileFaceNet, ONNX export) to TFLite.

``source``: the pinned upstream files; ``onnxgraph``: the ONNX graph read into plain steps with NumPy
weights; ``tfgraph``: the same steps as a TensorFlow function and its TFLite conversions.
"""
