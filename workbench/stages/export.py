"""``export``: torch.onnx.export, by default torch's ``torch.export``-based exporter (onnxscript), with
``torch.export.Dim``s for the declared batch and sequence axes; ``exporter: torchscript`` keeps the legacy one.

With torch 2.13 + onnxscript 0.7 the default exports an ``nn.TransformerEncoder`` with a padding mask (the
TorchScript exporter fails on its fused fast path, or freezes the example's length inside attention). The
example batch is 2 (a size-1 axis would be specialised to 1); one ``Dim`` per axis name is shared by every
input. What the exporter says (warnings, prints, log records, C++ output) goes whole into the facts.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from workbench.errors import StageError
from workbench.precision import FP32
from workbench.stages import Facts, Params, Source, TorchSource, stage

if TYPE_CHECKING:
    import onnx
    import torch

PROTO_LIMIT = 2**31  # protobuf's 2 GB: a larger model keeps its weights in one external data file beside it
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CAUSE_LINES = 8  # lines of the underlying error kept in a StageError (constraint violations carry their fix)


class ExportParams(Params):
    opset: int = Field(18, ge=11, le=21)  # 18: the onnxscript torchlib's own opset (no version conversion)
    constant_folding: bool = True  # dynamo: onnxscript's graph optimizer; torchscript: do_constant_folding
    exporter: Literal["dynamo", "torchscript"] = "dynamo"
    max_length: int | None = Field(None, ge=1)  # the sequence Dim's max (None: the model's, else unbounded)


class ExportFacts(Facts):
    exporter: str
    torch: str
    opset: int
    onnxscript: str | None = None  # the dynamo exporter's translator; None for the TorchScript exporter
    dims: dict[str, str] = Field(default_factory=dict)  # axis name -> range, e.g. {"sequence": "1..512"}
    external_data: bool = False  # True only for a model over 2 GB: its weights are in ``<dst>.data``
    log: str = ""  # what the exporter printed (stdout, stderr, log records, C++), whole
    # declared inputs the model does not read, which the exporter dropped: put back, so the file takes what the
    # recipe declares (a tokenizer's token_type_ids for a DeBERTa-v2 with no token types)
    unused_inputs: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """Which exporter and versions ran, and the dynamic axes it was given."""
        tool = self.exporter + (f" (onnxscript {self.onnxscript})" if self.onnxscript else "")
        lines = [f"exporter: {tool}, torch {self.torch}, opset {self.opset}"]
        if self.dims:
            lines.append("dynamic axes: " + ", ".join(f"{name} {span}" for name, span in self.dims.items()))
        if self.external_data:
            lines.append("over 2 GB: weights saved beside the file as external data")
        if self.unused_inputs:
            kept = ", ".join(self.unused_inputs)
            lines.append(f"inputs the model does not read, kept so the file takes every declared input: {kept}")
        return lines


@stage("export", params=ExportParams, facts=ExportFacts, precision=FP32, takes="torch")
def export(source: Source, params: ExportParams, dst: Path) -> ExportFacts:
    """Export ``source.torch`` to ``dst`` (one self-contained file under 2 GB), named and checked."""
    from importlib.metadata import version

    import torch

    model = source.torch
    assert model is not None, "export takes the torch model"
    module, example = model.module, model.example  # built outside the catch: a bad model is an InputError
    run = _dynamo if params.exporter == "dynamo" else _torchscript
    log: list[str] = []
    with warnings.catch_warnings(record=True) as caught, captured(log):
        warnings.simplefilter("always")
        try:
            exporter, dims = run(module, example, model, params, dst)
        except StageError:
            raise
        except Exception as exc:  # the exporter's own failure, whatever its type: a failed stage, not a crash
            raise StageError(_failure(exc, params.exporter, model, example)) from exc
    unused = _declared_inputs(dst, model)
    external = _finish(dst, {**model.metadata, "onnx_opset": str(params.opset), "exporter": exporter})
    written = _opset(dst)  # the exporter may not convert down to the opset asked for: say what the file holds
    warned = () if written == params.opset else (f"asked for opset {params.opset}; the file holds opset {written}",)
    return ExportFacts(
        exporter=exporter,
        torch=torch.__version__,
        opset=written,
        onnxscript=version("onnxscript") if params.exporter == "dynamo" else None,
        dims=dims,
        external_data=external,
        unused_inputs=unused,
        warnings=warned + tuple(dict.fromkeys(_ANSI.sub("", str(w.message)).strip() for w in caught)),
        log=_ANSI.sub("", "".join(log)),
    )


def dynamic_shapes(model: TorchSource, max_length: int | None) -> tuple[dict[int, Any] | None, ...]:
    """One ``{dim_index: Dim}`` per input, in order; one ``Dim`` object per axis name, shared by all inputs.

    Every axis starts at 1; the ``sequence`` axis ends at ``max_length`` (else the source's, else unbounded).
    """
    import torch

    longest = max_length or model.max_length
    names = {name for axes in model.dynamic_axes.values() for name in axes.values()}
    dims = {name: torch.export.Dim(name, min=1, max=longest if name == "sequence" else None) for name in names}
    return tuple(
        {index: dims[name] for index, name in model.dynamic_axes[input_name].items()}
        if model.dynamic_axes.get(input_name)
        else None
        for input_name in model.input_names
    )


def _dynamo(
    module: torch.nn.Module, example: tuple[torch.Tensor, ...], model: TorchSource, params: ExportParams, dst: Path
) -> tuple[str, dict[str, str]]:
    """torch.export + onnxscript; written to ``dst`` without external data unless over 2 GB."""
    import torch

    _fresh_dispatch()
    shapes = dynamic_shapes(model, params.max_length)
    program = torch.onnx.export(
        module,
        example,
        dynamo=True,
        opset_version=params.opset,
        optimize=params.constant_folding,
        input_names=list(model.input_names),
        output_names=[model.output_name],
        dynamic_shapes=shapes,
    )
    assert program is not None
    dims = _held(program.exported_program, model, shapes)
    large = sum(v.const_value.nbytes for v in program.model.graph.initializers.values() if v.const_value) >= PROTO_LIMIT
    program.save(str(dst), external_data=large)
    return "torch.onnx.export(dynamo=True)", dims


def _fresh_dispatch() -> None:
    """Forget the dispatch choices an earlier export in this process cached on each op.

    Measured with torch 2.13: after one export, ``aten.lstm``'s cached dispatch sends the next export (another run
    in the same process) down the LSTM's Python decomposition, which loops over time steps and so specialises the
    sequence axis to the example's length. Clearing the per-op caches restores the first export's behaviour.
    """
    import torch

    for packet in list(vars(torch.ops.aten).values()):
        if isinstance(packet, torch._ops.OpOverloadPacket):
            for overload in list(vars(packet).values()):
                if isinstance(overload, torch._ops.OpOverload):
                    overload._dispatch_cache.clear()


def _held(program: Any, model: TorchSource, shapes: tuple[dict[int, Any] | None, ...]) -> dict[str, str]:
    """Each declared axis's range, as ``low..high``; a StageError when the model's code holds an axis to less
    (torch.export narrows a Dim quietly, and the graph then fails outside the narrower range)."""
    asked = {dim.__name__: (dim.min, _bound(dim.max)) for axes in shapes if axes for dim in axes.values()}
    got = _ranges(program, model)
    narrowed = {n: got[n] for n in asked if n in got and (got[n][0] > asked[n][0] or _below(got[n][1], asked[n][1]))}
    if narrowed:
        raise StageError(_narrowed(narrowed, asked))
    return {name: _span(*asked[name]) for name in sorted(asked)}


def _torchscript(
    module: torch.nn.Module, example: tuple[torch.Tensor, ...], model: TorchSource, params: ExportParams, dst: Path
) -> tuple[str, dict[str, str]]:
    """The legacy TorchScript exporter with ``dynamic_axes`` (under ``no_grad``, as the workbench always ran it)."""
    import torch

    with torch.no_grad():
        torch.onnx.export(
            module,
            example,
            str(dst),
            dynamo=False,
            opset_version=params.opset,
            do_constant_folding=params.constant_folding,
            input_names=list(model.input_names),
            output_names=[model.output_name],
            dynamic_axes=model.dynamic_axes,
        )
    names = sorted({name for axes in model.dynamic_axes.values() for name in axes.values()})
    return "torch.onnx.export(dynamo=False)", {name: "dynamic" for name in names}


def _bound(value: Any) -> int | None:
    """A range's upper end as an int, None when unbounded (torch's ``int_oo``)."""
    try:
        number = int(value)
    except (TypeError, ValueError, AttributeError, OverflowError):  # int_oo, sympy's oo, None
        return None
    return number if number < 2**62 else None


def _below(got: int | None, asked: int | None) -> bool:
    """Whether the upper end ``got`` is tighter than ``asked`` (None: unbounded)."""
    return got is not None and (asked is None or got < asked)


def _span(low: int, high: int | None) -> str:
    """A range as ``low..high`` (``low..`` when unbounded)."""
    return f"{low}..{'' if high is None else high}"


def _ranges(program: Any, model: TorchSource) -> dict[str, tuple[int, int | None]]:
    """Axis name -> the range torch.export found the graph valid for (a fixed size n reads as (n, n))."""
    nodes = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    found: dict[str, tuple[int, int | None]] = {}
    for input_name, arg in zip(model.input_names, program.graph_signature.user_inputs, strict=False):
        sizes = nodes[arg].meta["val"].shape
        for index, axis in model.dynamic_axes.get(input_name, {}).items():
            size = sizes[index]
            if isinstance(size, int):
                found[axis] = (size, size)
                continue
            limits = program.range_constraints.get(size.node.expr)
            if limits is not None:
                found[axis] = (int(limits.lower), _bound(limits.upper))
    return found


def _narrowed(narrowed: dict[str, tuple[int, int | None]], asked: dict[str, tuple[int, int | None]]) -> str:
    """The StageError for axes the model's code holds to a smaller range than the recipe declares."""
    spans = ", ".join(f"{n} to {_span(*narrowed[n])} (declared {_span(*asked[n])})" for n in narrowed)
    hint = " (if the model really stops there, set model.max_length: N)" if "sequence" in narrowed else ""
    return f"export (dynamo exporter): the model's code narrows {spans}; the graph would fail outside it{hint}"


LOCAL_METADATA = {"pkg.torch.onnx.stack_trace"}  # node metadata that depends on where the code lives


def _declared_inputs(dst: Path, model: TorchSource) -> tuple[str, ...]:
    """Put back, as graph inputs, declared inputs the exporter dropped because the model does not read them
    (the TorchScript exporter does; the dynamo one keeps them), in the declared order; their names."""
    import onnx

    proto = onnx.load(str(dst), load_external_data=False)
    have = {value.name: value for value in proto.graph.input}
    missing = [name for name in model.input_names if name not in have]
    if not missing:
        return ()
    made = {}
    for name, tensor in zip(model.input_names, model.example, strict=True):
        if name in missing:
            axes = model.dynamic_axes.get(name, {})
            shape = [axes.get(i, size) for i, size in enumerate(tensor.shape)]
            elem = onnx.helper.np_dtype_to_tensor_dtype(tensor.numpy().dtype)
            made[name] = onnx.helper.make_tensor_value_info(name, elem, shape)
    others = [value for value in proto.graph.input if value.name not in model.input_names]
    ordered = [have[name] if name in have else made[name] for name in model.input_names] + others
    del proto.graph.input[:]
    proto.graph.input.extend(ordered)
    onnx.save(proto, str(dst))  # external data, if any, stays where the exporter wrote it: _finish loads it
    return tuple(missing)


def _finish(dst: Path, metadata: dict[str, str], *, limit: int = PROTO_LIMIT) -> bool:
    """Set the metadata, check the model fully and save it as one file (external data only over ``limit``)."""
    import onnx

    proto = onnx.load(str(dst))  # pulls in any external data the exporter wrote
    onnx.helper.set_model_props(proto, metadata)
    for node in proto.graph.node:  # stack traces name this machine's source paths: the same model elsewhere
        kept = [p for p in node.metadata_props if p.key not in LOCAL_METADATA]  # would export to other bytes
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    large = _weight_bytes(proto) >= limit
    stray = [dst.parent / loc for loc in _external_locations(dst)]
    data = dst.with_name(dst.name + ".data")
    if large:
        onnx.save(proto, str(dst), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name)
    else:
        onnx.save(proto, str(dst))
    for path in stray:
        if path.is_file() and not (large and path == data):
            path.unlink()
    onnx.checker.check_model(str(dst), full_check=True)
    return large


def _opset(path: Path) -> int:
    """The default domain's opset the file imports."""
    import onnx

    imports = onnx.load(str(path), load_external_data=False).opset_import
    return next((o.version for o in imports if o.domain in ("", "ai.onnx")), 0)


def _weight_bytes(proto: onnx.ModelProto) -> int:
    """Bytes of the initializers' data."""
    return sum(len(t.raw_data) or t.ByteSize() for t in proto.graph.initializer)


def _external_locations(dst: Path) -> set[str]:
    """The external data files ``dst`` refers to (read without loading them)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    proto = onnx.load(str(dst), load_external_data=False)
    return {ExternalDataInfo(t).location for t in proto.graph.initializer if uses_external_data(t)}


def _failure(exc: BaseException, exporter: str, model: TorchSource, example: tuple[Any, ...]) -> str:
    """The exporter's own message (its first line and the underlying error's first lines) and where it failed."""
    shapes = ", ".join(f"{n} {list(t.shape)}" for n, t in zip(model.input_names, example, strict=False))
    head = _first_lines(exc, 1)
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    message = f"export ({exporter} exporter) failed on example inputs {shapes}: {type(exc).__name__}: {head}"
    if root is not exc:
        message += f"\ncaused by {type(root).__name__}: {_first_lines(root, _CAUSE_LINES)}"
    return message


def _first_lines(exc: BaseException, count: int) -> str:
    """The first ``count`` non-empty lines of an exception's message, colour codes removed."""
    lines = [line.rstrip() for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()]
    return "\n".join(lines[:count]) or "(no message)"


@contextmanager
def captured(into: list[str]) -> Iterator[None]:
    """Send everything printed meanwhile to ``into`` instead of the terminal: Python's and C/C++'s stdout and
    stderr (file descriptors 1 and 2 too) and the log records of torch's and onnx's own stream handlers."""
    handle, name = tempfile.mkstemp(prefix="workbench-export-", suffix=".log")
    os.close(handle)
    try:
        sink = open(name, "a", encoding="utf-8", errors="replace", buffering=1)  # noqa: SIM115  (O_APPEND: one order)
        with sink, _fds_to(sink), _handlers_to(sink), redirect_stdout(sink), redirect_stderr(sink):
            yield
        into.append(Path(name).read_text(encoding="utf-8", errors="replace"))
    finally:
        os.unlink(name)


@contextmanager
def _fds_to(sink: Any) -> Iterator[None]:
    """Point file descriptors 1 and 2 at ``sink`` (what C++ code prints), then put them back."""
    import ctypes

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        yield
    finally:
        ctypes.CDLL(None).fflush(None)  # C stdio buffers a redirected stdout: empty it into the sink first
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


@contextmanager
def _handlers_to(sink: Any) -> Iterator[None]:
    """Point the stream handlers of the root, torch, onnx and onnxscript loggers at ``sink``, then put them back
    (a handler keeps the stream it was made with, so redirecting sys.stderr alone misses it)."""
    known = list(logging.root.manager.loggerDict.items())
    loggers = [logging.getLogger()] + [
        lg
        for name, lg in known
        if isinstance(lg, logging.Logger) and name.split(".")[0] in ("torch", "onnx", "onnxscript", "onnx_ir")
    ]
    handlers = {h for lg in loggers for h in lg.handlers if type(h) is logging.StreamHandler}
    before = {h: h.setStream(sink) for h in handlers}
    try:
        yield
    finally:
        for handler, stream in before.items():
            if stream is not None:
                handler.setStream(stream)
