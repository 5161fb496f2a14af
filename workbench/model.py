"""Build the PyTorch model of record: import ``module:Class``, load weights safely, put it in eval mode."""

from __future__ import annotations

import importlib
import json
import pickle
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench import __version__, huggingface
from workbench.errors import InputError
from workbench.stages import TorchSource
from workbench.store.files import file_sha256, key

if TYPE_CHECKING:
    import torch

    from workbench.recipe import ModelSpec, Recipe


@contextmanager
def _on_path(folder: Path):
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))


def import_class(spec: str, *, search_path: Path) -> type:
    """``"package.module:Class"`` -> the class, importing with ``search_path`` first on sys.path."""
    return import_class_from(spec, search_path=search_path)[0]


def import_class_from(spec: str, *, search_path: Path) -> tuple[type, Path | None]:
    """The class, and the source file of the module it was imported from (what a cache key must hash)."""
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise InputError(f"model class {spec!r} is not of the form 'module:Class'")
    with _on_path(search_path), _shadowed_set_aside(module_name, search_path):
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise InputError(f"cannot import module {module_name!r} (searched {search_path} first): {exc}") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise InputError(f"module {module_name!r} has no class {class_name!r}")
    home = module if cls.__module__ == module.__name__ else sys.modules.get(cls.__module__)  # re-exported?
    source = getattr(home, "__file__", None)
    return cls, Path(source) if source else None


def module_file(spec: str, *, search_path: Path) -> Path | None:
    """The source file ``import_class(spec)`` would import, found without importing it (no torch import for a
    cache key); a module that cannot be found is an InputError."""
    import importlib.machinery
    import importlib.util

    module_name = spec.partition(":")[0]
    top = module_name.split(".")[0]
    with _on_path(search_path):
        found = importlib.machinery.PathFinder.find_spec(top, [str(search_path)]) if "." not in module_name else None
        try:
            found = found or importlib.util.find_spec(module_name)
        except (ImportError, ValueError) as exc:
            raise InputError(f"cannot import module {module_name!r} (searched {search_path} first): {exc}") from None
    if found is None:
        raise InputError(f"cannot import module {module_name!r} (searched {search_path} first): no such module")
    return Path(found.origin) if found.origin and found.has_location else None


@contextmanager
def _shadowed_set_aside(module_name: str, search_path: Path):
    """A top-level module imported earlier from elsewhere, that ``search_path`` also holds, is imported anew from
    ``search_path`` (root first means first, in a long-lived process too); afterwards the process's own modules
    are put back, so what it imported before keeps working (e.g. pickling its classes)."""
    import importlib.machinery

    top = module_name.split(".")[0]
    loaded = sys.modules.get(top)
    spec = importlib.machinery.PathFinder.find_spec(top, [str(search_path)])
    loaded_file = getattr(loaded, "__file__", None) if loaded is not None else None
    shadowed = (
        loaded_file is not None
        and spec is not None
        and spec.origin is not None
        and Path(loaded_file).resolve() != Path(spec.origin).resolve()
    )
    if not shadowed:
        yield
        return
    aside = {n: sys.modules.pop(n) for n in list(sys.modules) if n == top or n.startswith(top + ".")}
    try:
        yield
    finally:
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
        sys.modules.update(aside)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state_dict with ``weights_only=True``: a pickle that would run code is refused, never run."""
    import torch

    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    if not zipfile.is_zipfile(path):
        raise InputError(
            f"{path}: not a readable torch.save file (expected a zip archive; truncated or another format?)"
        )
    import zlib

    # torch.load does not check the CRC-32s in the zip: bytes changed inside a tensor would load as other weights
    damaged = None
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    try:
                        while member.read(1 << 20):
                            pass
                    except zipfile.BadZipFile:  # a read raises it only for a CRC-32 that does not match
                        damaged = info.filename
                if damaged is not None:
                    break
    except (EOFError, OSError, RuntimeError, zipfile.BadZipFile, zlib.error) as exc:
        raise InputError(f"{path}: not a readable torch.save file (truncated or not a checkpoint): {exc}") from None
    if damaged is not None:
        raise InputError(
            f"{path}: damaged: {damaged!r} fails its CRC-32 check (its bytes changed after torch.save wrote them); "
            "not loaded"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        parts = [p.strip() for p in str(exc).split("\n\n") if p.strip()]
        useful = [p for p in parts if not p.startswith(("Weights only load failed", "Check the documentation"))]
        detail = (useful or parts or [type(exc).__name__])[0].replace("\n", " ")
        raise InputError(
            f"{path}: refused: the file holds objects other than tensors (a pickled module or code); "
            f"save it with torch.save(model.state_dict(), ...). Loader said: {detail}"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable torch.save file (truncated or not a checkpoint): {exc}") from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: expected a state_dict (names -> tensors), got {type(state).__name__}")
    for name, value in state.items():
        if not isinstance(value, torch.Tensor):
            shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
            raise InputError(f"{path}: expected a state_dict (names -> tensors); {shown} holds {type(value).__name__}")
    return state


def build(cls: type, kwargs: dict[str, Any], state: dict[str, torch.Tensor], *, source: Path) -> torch.nn.Module:
    """Instantiate ``cls(**kwargs)``, load ``state`` strictly, and return it in eval mode."""
    try:
        model = cls(**kwargs)
    except TypeError as exc:
        raise InputError(f"cannot build {cls.__name__}(**{kwargs}): {exc}") from None
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise InputError(
            f"{source}: weights do not fit {cls.__name__}: missing keys {missing}, unexpected keys {unexpected}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        shapes = "; ".join(line.strip() for line in str(exc).splitlines()[1:] if line.strip())
        raise InputError(f"{source}: tensor shapes do not fit {cls.__name__}: {shapes or exc}") from None
    return model.eval()


def model_spec(recipe: Recipe) -> ModelSpec:
    """The recipe's model with a Hugging Face folder's vocabulary, weights file and tokenizer inputs filled in."""
    return recipe.model.resolved(recipe.root)


def torch_source(recipe: Recipe) -> tuple[TorchSource, str]:
    """The module ready for export (built on first use), and a key naming exactly what it is built from."""
    spec = model_spec(recipe)
    if spec.huggingface is not None:
        return _folder_source(recipe, spec)
    weights = recipe.resolve(spec.weights)
    if not weights.is_file():
        raise InputError(f"{weights}: weights file not found")
    assert spec.class_ is not None
    code_file = module_file(spec.class_, search_path=recipe.root)
    weights_sha = file_sha256(weights)
    code_sha = file_sha256(code_file) if code_file else "unknown"
    class_ = spec.class_

    def build_module() -> Any:
        cls = import_class(class_, search_path=recipe.root)
        return build(cls, dict(spec.kwargs), load_state_dict(weights), source=weights)

    metadata = {"model_class": class_, "weights_sha256": weights_sha, **_common_metadata(spec)}
    if spec.classes:
        metadata[huggingface.META_CLASSES] = json.dumps(list(spec.classes))
    source = _source(recipe, spec, build_module, metadata, max_length=spec.max_length)
    return source, key(class_, code_sha, weights_sha, spec.kwargs, _keyed(spec, {"weights"}), metadata)


def _folder_source(recipe: Recipe, spec: ModelSpec) -> tuple[TorchSource, str]:
    """A save_pretrained folder: its logits-only wrapper, keyed by the hashes of the folder's files."""
    assert spec.huggingface is not None
    folder = recipe.resolve(spec.huggingface)
    info = huggingface.inspect(folder)
    names = tuple(i.name for i in spec.inputs)

    def build_module() -> Any:
        loaded = huggingface.load(folder)
        if names != loaded.input_names[: len(names)] or not set(names) <= set(huggingface.INPUT_ORDER):
            raise InputError(
                f"{recipe.path}: model.inputs {list(names)} do not fit the folder's model, which takes "
                f"{list(loaded.input_names)} in that order"
            )
        return _logits_for(loaded, names)

    metadata = {
        "model_class": f"huggingface:{info.model_type or 'unknown'}",
        "weights_sha256": info.files[info.weights_file] if info.weights_file in info.files else info.key,
        **_common_metadata(spec),
        **info.optimizer_metadata,
        huggingface.META_CLASSES: json.dumps(list(info.class_names)),
    }
    source = _source(recipe, spec, build_module, metadata, max_length=spec.max_length)
    return source, key("huggingface", info.key, _keyed(spec, {"weights", "huggingface"}), metadata)


def _logits_for(loaded: huggingface.HFModel, names: tuple[str, ...]) -> Any:
    """The loaded wrapper, taking only the declared inputs (a recipe may leave token_type_ids out)."""
    if names == loaded.input_names:
        return loaded.wrapper
    return type(loaded.wrapper)(loaded.module, names).eval()


def _keyed(spec: ModelSpec, exclude: set[str]) -> dict[str, Any]:
    """The spec as a key part; ``max_length`` only when set. (The key also holds the metadata the export writes:
    the file's bytes follow it.)"""
    dump = spec.model_dump(exclude=exclude)
    if dump.get("max_length") is None:
        dump.pop("max_length", None)
    return dump


def _common_metadata(spec: ModelSpec) -> dict[str, str]:
    from importlib.metadata import version

    longest = {"max_length": str(spec.max_length)} if spec.max_length else {}  # workbench bench fits its lengths
    return {
        "torch_version": version("torch"),
        "vocab_size": str(spec.vocab_size),
        **longest,
        "producer": f"workbench {__version__}",
    }


def _source(
    recipe: Recipe, spec: ModelSpec, build_module: Any, metadata: dict[str, str], *, max_length: int | None
) -> TorchSource:
    axes: dict[str, dict[int, str]] = {i.name: dict(enumerate(i.axes)) for i in spec.inputs}
    axes[spec.output] = {0: "batch"}
    names = tuple(i.name for i in spec.inputs)
    return TorchSource(
        build_module, names, spec.output, lambda: example_inputs(recipe), axes, metadata, max_length=max_length
    )


def example_inputs(recipe: Recipe) -> tuple[Any, ...]:
    """One example per declared input for the exporter (see ``FeedSpec.example``)."""
    import torch

    spec = model_spec(recipe)
    feeds = spec.feed.example(spec.example_length)
    return tuple(torch.from_numpy(array) for array in feeds.values())
