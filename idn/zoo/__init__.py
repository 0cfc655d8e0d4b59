"""The model zoo: real ONNX variants of each task, built reproducibly and measured.

``idn models build`` generates or loads the data (:mod:`idn.zoo.datasets`), trains
(:mod:`idn.zoo.train`), exports (:mod:`idn.zoo.export`) and quantizes
(:mod:`idn.zoo.quantize`) every variant declared in :mod:`idn.zoo.specs`, then
measures accuracy (:mod:`idn.zoo.evaluate`) and latency (:mod:`idn.zoo.profile`) with
ONNX Runtime and writes ``models/catalog.yaml`` (:mod:`idn.zoo.catalog_writer`).

Only the build needs the ``zoo`` extra (torch, scikit-learn, scipy, onnx); evaluating,
profiling and verifying the committed zoo needs nothing beyond the runtime
dependencies (numpy + onnxruntime), so those modules never import the training stack.
"""
