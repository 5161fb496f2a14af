"""Facts about an ONNX file that every stage's artifact gets: hash, size with external data, op counts."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from workbench.errors import InputError
from workbench.results import ArtifactInfo
from workbench.store.files import file_sha256


def read_graph(path: Path):
    """The ONNX model without its weights' external data; a file that is not ONNX is an InputError, said once here."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise InputError(f"{path}: not a readable ONNX model: {exc}") from None


def describe(path: Path) -> ArtifactInfo:
    """Read the graph (not the weights) and measure the file set; a file that is not ONNX is an InputError."""
    from onnx.external_data_helper import uses_external_data

    proto = read_graph(path)
    external = sorted(
        {
            entry.value
            for tensor in proto.graph.initializer
            if uses_external_data(tensor)
            for entry in tensor.external_data
            if entry.key == "location"
        }
    )
    files = (path.name, *external)
    size = sum((path.parent / name).stat().st_size for name in files)
    inputs = tuple(
        (value.name, tuple(d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim))
        for value in proto.graph.input
        if value.name not in {init.name for init in proto.graph.initializer}
    )
    counts = Counter(node.op_type for node in proto.graph.node)
    digests = [file_sha256(path.parent / name) for name in files]
    digest = digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()
    return ArtifactInfo(
        path=path,
        file=path.name,
        sha256=digest,
        bytes=size,
        files=files,
        op_counts=dict(sorted(counts.items())),
        inputs=dict(inputs),
        graph_sha256=graph_sha256(proto, digests[1:]),
    )


def graph_sha256(proto, external_digests: list[str]) -> str:
    """A hash of what an engine computes from the file: the graph (nodes, weights, inputs, outputs) and the opset
    of each domain its nodes use, but not metadata (the model's, the graph's or a node's), doc strings, producer or
    unused opset imports. Two artifacts with the same
    graph hash give the same outputs on the same engine: their checks and timings are shared."""
    used = {node.domain for node in proto.graph.node} | {""}
    opsets = sorted((o.domain, o.version) for o in proto.opset_import if o.domain in used)
    graph = type(proto.graph)()
    graph.CopyFrom(proto.graph)
    for node in graph.node:  # where a node came from (the exporter's scopes and stack traces) computes nothing
        del node.metadata_props[:]
        node.doc_string = ""
    del graph.metadata_props[:]
    digest = hashlib.sha256(graph.SerializeToString(deterministic=True))
    digest.update(repr((opsets, external_digests)).encode())
    return digest.hexdigest()
