"""Every zoo variant loads in a real node and answers real held-out samples through gRPC.

The catalog's accuracy was measured in-process on the same held-out split; served
through the network the predictions must be the same, so the accuracy must match.
imagenet's accuracy is cited or estimated, not measured on its photos: served, each
variant must give the expected answer on every photo (uint8 tensors through the wire).
"""

from __future__ import annotations

import numpy as np
import pytest

from idn.catalog import DEFAULT_CATALOG, load_catalog
from idn.client import Client
from idn.node.server import NodeConfig
from idn.zoo.evaluate import EVAL_BATCH
from idn.zoo.samples import read_samples
from tests.conftest import RunningNode

pytestmark = pytest.mark.skipif(not DEFAULT_CATALOG.is_file(), reason="the zoo is built by `idn models build`")


@pytest.fixture(scope="module")
def zoo_node():
    cat = load_catalog(DEFAULT_CATALOG)
    node = RunningNode(NodeConfig(listen="127.0.0.1:0", node_id="zoo", catalog=cat, variants=sorted(cat.variants)))
    yield cat, node
    node.stop()


def test_every_variant_serves_its_catalog_accuracy(zoo_node):
    cat, node = zoo_node
    with Client(node.address, timeout=60) as c:
        assert c.ready()
        for task in cat.tasks.values():
            inputs, labels = read_samples(task.samples)
            in_name, out_name = task.inputs[0].name, task.outputs[0].name
            for v in task.variants.values():
                md = c.metadata(v.name)
                assert [(t.name, t.datatype) for t in md.inputs] == [(s.name, s.datatype) for s in task.inputs]
                one = c.infer(v.name, {in_name: inputs[:1]})
                assert one.outputs[out_name].shape == (1, len(task.labels)) and one.variant == v.name
                # The same batches the catalog was measured with: int8-dynamic variants quantize
                # activations per batch, so their answers depend on what shares the batch.
                probs = np.concatenate([c.infer(v.name, {in_name: inputs[i:i + EVAL_BATCH]}).outputs[out_name]
                                        for i in range(0, len(inputs), EVAL_BATCH)])
                if v.accuracy_source != "measured":
                    assert task.expected and len(probs) == len(task.expected)
                    assert [int(np.argmax(probs[e.sample])) in e.classes for e in task.expected] == \
                        [True] * len(task.expected), v.name
                    continue
                correct = int((probs.argmax(1) == labels).sum())
                assert correct / len(labels) == pytest.approx(v.accuracy, abs=0.5 / len(labels)), v.name
                assert len(labels) == v.accuracy_samples


def test_dynamically_quantized_variants_are_never_batched(tmp_path):
    import yaml

    from idn.node.runtime import VariantRuntime
    from idn.node.settings import NodeSettings

    cat = load_catalog(DEFAULT_CATALOG)
    doc = yaml.safe_load(DEFAULT_CATALOG.read_text())
    dynamic = [cat.variants[name] for t in doc["tasks"].values() for name, v in t["variants"].items()
               if v.get("quantization_method") == "dynamic"]
    assert dynamic, "the zoo has int8-dynamic variants"
    settings = NodeSettings(max_batch=32)
    for v in dynamic:
        assert VariantRuntime(v.name, v.path, settings).batcher is None
    fp32 = next(v for v in cat.variants.values() if v.quantization is None)
    assert VariantRuntime(fp32.name, fp32.path, settings).batcher is not None


def test_default_batch_limit_comes_from_the_catalog_profile():
    """With default settings a variant batches up to the largest profiled batch that is no
    dearer per sample than batch 1: the small digits models up to 32, the imagenet ones
    (dearer per sample when batched) not at all; an explicit --max-batch overrides it."""
    from idn.node.runtime import VariantRuntime
    from idn.node.settings import NodeSettings
    from idn.node.store import VariantStore

    cat = load_catalog(DEFAULT_CATALOG)
    store = VariantStore(NodeSettings(), catalog=cat, hardware_class="cpu-x86_64-2c")
    mlp, lite = cat.variants["digits-mlp-s"], cat.variants["imagenet-lite0"]
    assert mlp.batch_limit("cpu-x86_64-2c") == 32 and lite.batch_limit("cpu-x86_64-2c") == 1
    rt = VariantRuntime(mlp.name, mlp.path, NodeSettings(), profile_batch=store.profile_batch(mlp.name))
    assert rt.batcher is not None and rt.max_batch == 32
    assert VariantRuntime(lite.name, lite.path, NodeSettings(),
                          profile_batch=store.profile_batch(lite.name)).batcher is None
    assert VariantRuntime(lite.name, lite.path, NodeSettings(max_batch=8),
                          profile_batch=store.profile_batch(lite.name)).max_batch == 8
    assert VariantRuntime(mlp.name, mlp.path, NodeSettings(max_batch=1)).batcher is None
