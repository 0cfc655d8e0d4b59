"""What client and node both speak, with neither's machinery: the wire vocabulary.

``params`` (the ``idn.*`` request/response parameter names and their get/set),
``tensors`` (numpy <-> Open Inference Protocol v2 tensors) and ``status`` (canonical
error statuses). Importing this package loads numpy and nothing of the server: no
ONNX Runtime, no data plane, no metrics.
"""
