"""IDN: an inference delivery network.

ONNX model variants of the same task, placed over a network of gRPC nodes from the
edge to the cloud by an integer linear program that trades latency against accuracy.
"""

__version__ = "0.1.0"
