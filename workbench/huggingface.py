"""A local Hugging Face ``save_pretrained`` folder as a model of record: offline, safetensors only, with its tokenizer.

``inspect(folder)`` reads what a recipe check and a cache key need (class names, sizes, file hashes) from the
files alone, importing neither torch nor transformers. ``load(folder)`` builds the eval-mode sequence classifier
(eager attention, so onnxruntime's optimizer can fuse it), its tokenizer, and a wrapper whose ``forward`` takes
the tokenizer's tensors positionally and returns the logits. ``transformers`` is an optional extra.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import InputError
from workbench.feeds import Feed, FeedSpec, InputSpec
from workbench.store.files import file_sha256, key

if TYPE_CHECKING:
    import torch

INSTALL = 'pip install -e ".[transformers]"'
VOCAB_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
TOKENIZER_FILES = (*VOCAB_FILES, "merges.txt", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json")
INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")  # the wrapper's positional order
# what FeedSpec.feeds puts in each
FEEDS: dict[str, Feed] = {"input_ids": "ids", "attention_mask": "mask", "token_type_ids": "zeros"}
HIDDEN_KEYS = ("hidden_size", "dim", "d_model", "n_embd")  # config.json spellings across model types
HEADS_KEYS = ("num_attention_heads", "n_heads", "num_heads", "n_head")
# ONNX metadata keys the export carries for a folder's model (what Optimum reads from config.json)
META_MODEL_TYPE, META_HEADS, META_HIDDEN, META_CLASSES = "model_type", "num_heads", "hidden_size", "class_names"


@dataclass(frozen=True)
class HFFolder:
    """What the folder's files say, read without torch or transformers."""

    folder: Path
    model_type: str
    class_names: tuple[str, ...]  # config.id2label, indexed by class
    vocab_size: int
    hidden_size: int | None  # None when config.json spells it in a way not known here; load() fills it in
    num_attention_heads: int | None
    # the longest input the model accepts: config.max_position_embeddings (n_positions), capped by the tokenizer's
    # model_max_length (RoBERTa's config counts two positions its inputs cannot use: 514 for 512 tokens)
    max_positions: int | None
    files: dict[str, str]  # file name -> sha256: config.json, *.safetensors, tokenizer files

    @property
    def weights_file(self) -> str:
        """The weights file a report names: model.safetensors, or the first shard's index."""
        names = [name for name in self.files if name.endswith((".safetensors", ".safetensors.index.json"))]
        return "model.safetensors" if "model.safetensors" in names else sorted(names)[0]

    @property
    def optimizer_metadata(self) -> dict[str, str]:
        """What onnxruntime's transformer optimizer needs to fuse attention, as ONNX metadata (empty when unknown)."""
        if not (self.model_type and self.num_attention_heads and self.hidden_size):
            return {}
        return {
            META_MODEL_TYPE: self.model_type,
            META_HEADS: str(self.num_attention_heads),
            META_HIDDEN: str(self.hidden_size),
        }

    @property
    def key(self) -> str:
        """A cache key naming exactly the files the model and its tokenizer are built from."""
        return key("huggingface", sorted(self.files.items()))


@dataclass(frozen=True)
class HFModel:
    """The loaded folder: module, logits-only wrapper, tokenizer and the inputs the wrapper takes, in order."""

    info: HFFolder
    module: torch.nn.Module  # AutoModelForSequenceClassification, eval mode, float32, eager attention
    wrapper: torch.nn.Module  # forward(*tensors in input_names order) -> logits [batch, classes]
    tokenizer: Any  # a transformers PreTrainedTokenizerBase
    input_names: tuple[str, ...]
    pad_token_id: int | None

    @property
    def inputs(self) -> tuple[InputSpec, ...]:
        """The wrapper's inputs as the workbench feeds them: batch first, int64, padding mask, zero segment ids."""
        return _specs(self.input_names)

    @property
    def feed_spec(self) -> FeedSpec:
        return FeedSpec(self.inputs, self.info.vocab_size, max_length=self.info.max_positions)


def _listing(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir())
    return ", ".join(names) if names else "nothing"


def _check_files(folder: Path) -> list[Path]:
    """The files to hash; a folder missing what a safe offline load needs is refused with one line."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder (model.huggingface takes a folder written by save_pretrained)")
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: no config.json, so not a save_pretrained folder; found: {_listing(folder)}")
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.safetensors.index.json"))
    if not weights:
        pickles = sorted(p.name for p in folder.glob("*.bin"))
        if pickles:
            raise InputError(
                f"{folder}: refused: weights only as a pickle ({', '.join(pickles)}), which can run code when loaded; "
                "resave with model.save_pretrained(folder, safe_serialization=True) to get model.safetensors"
            )
        raise InputError(f"{folder}: no model.safetensors; found: {_listing(folder)}")
    if not any((folder / name).is_file() for name in VOCAB_FILES):
        raise InputError(
            f"{folder}: no tokenizer files (expected tokenizer.json, or vocab.txt, vocab.json + merges.txt or a "
            f"sentencepiece .model; save them with tokenizer.save_pretrained(folder)); found: {_listing(folder)}"
        )
    tokenizer = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()]
    return [folder / "config.json", *weights, *tokenizer]


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not readable as JSON: {exc}") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(config).__name__}")
    return config


def _class_names(config: dict[str, Any], path: Path) -> tuple[str, ...]:
    """``id2label`` as a list indexed by class (transformers' LABEL_i when the config has none)."""
    id2label = config.get("id2label") or {str(i): f"LABEL_{i}" for i in range(int(config.get("num_labels", 2)))}
    try:
        by_index = {int(k): str(v) for k, v in id2label.items()}
    except (AttributeError, TypeError, ValueError):
        raise InputError(f"{path}: id2label must map class indices to names, got {id2label!r}") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise InputError(f"{path}: id2label must have the indices 0..{len(by_index) - 1}, got {sorted(by_index)}")
    return tuple(by_index[i] for i in range(len(by_index)))


def _first_int(config: dict[str, Any], names: tuple[str, ...]) -> int | None:
    found = [config[n] for n in names if isinstance(config.get(n), int)]
    return found[0] if found else None


def _longest_input(config: dict[str, Any], folder: Path) -> int | None:
    positions = _first_int(config, ("max_position_embeddings", "n_positions"))
    tokenizer_config = folder / "tokenizer_config.json"
    said = _read_config(tokenizer_config).get("model_max_length") if tokenizer_config.is_file() else None
    # transformers writes 1e30 for "no limit"
    limit = said if isinstance(said, int) and not isinstance(said, bool) and 0 < said <= 1_000_000 else None
    known = [n for n in (positions, limit) if n is not None]
    return min(known) if known else None


def inspect(folder: str | Path) -> HFFolder:
    """Check ``folder`` holds config.json, safetensors weights and tokenizer files, and read its description."""
    folder = Path(folder)
    files = _check_files(folder)
    config = _read_config(folder / "config.json")
    vocab_size = config.get("vocab_size")
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise InputError(f"{folder / 'config.json'}: vocab_size must be a positive integer, got {vocab_size!r}")
    return HFFolder(
        folder=folder,
        model_type=str(config.get("model_type", "")),
        class_names=_class_names(config, folder / "config.json"),
        vocab_size=vocab_size,
        hidden_size=_first_int(config, HIDDEN_KEYS),
        num_attention_heads=_first_int(config, HEADS_KEYS),
        max_positions=_longest_input(config, folder),
        files={path.name: file_sha256(path) for path in files},
    )


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise InputError(f"a Hugging Face folder needs the transformers library: {INSTALL}") from None
    return transformers


@contextmanager
def quiet_progress() -> Iterator[None]:
    """No progress bars from transformers ("Loading weights", "Writing model shards") inside the block."""
    from transformers.utils import logging

    was_enabled = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            logging.enable_progress_bar()


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@cache
def _logits_only_class() -> type:
    import torch

    class LogitsOnly(torch.nn.Module):
        """``forward(input_ids, attention_mask[, token_type_ids])`` -> the classifier's logits tensor."""

        def __init__(self, model: torch.nn.Module, input_names: tuple[str, ...]):
            super().__init__()
            self.model, self.input_names = model, input_names

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
        ) -> torch.Tensor:
            named = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            return self.model(**{name: named[name] for name in self.input_names}).logits

    return LogitsOnly


def _input_names(tokenizer: Any, folder: Path) -> tuple[str, ...]:
    """The tensors the tokenizer gives for one text, in the wrapper's order; input_ids and attention_mask required."""
    produced = set(tokenizer("a", return_tensors=None))
    names = tuple(name for name in INPUT_ORDER if name in produced)
    if names[:2] != ("input_ids", "attention_mask"):
        raise InputError(
            f"{folder}: the tokenizer gives {sorted(produced)}; the workbench needs input_ids and attention_mask"
        )
    return names


def _load_tokenizer(transformers: Any, folder: Path, vocab_size: int) -> Any:
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise InputError(f"{folder}: transformers could not load its tokenizer: {_one_line(exc)}") from None
    if len(tokenizer) > vocab_size:
        raise InputError(
            f"{folder}: the tokenizer has {len(tokenizer)} tokens but the model's vocab_size is {vocab_size}: "
            "not the tokenizer this model was trained with"
        )
    return tokenizer


def _untrained(loading: dict[str, Any]) -> list[str]:
    """Weights transformers had to start at random: missing from the files, or of another shape there."""
    mismatched = {str(k[0]) if isinstance(k, tuple) else str(k) for k in loading.get("mismatched_keys", ())}
    return sorted(set(map(str, loading.get("missing_keys", ()))) | mismatched)


def _load_module(transformers: Any, folder: Path) -> torch.nn.Module:
    try:
        with quiet_progress():
            module, loading = transformers.AutoModelForSequenceClassification.from_pretrained(
                folder,
                local_files_only=True,
                use_safetensors=True,
                attn_implementation="eager",  # plain MatMul/Softmax attention: what onnxruntime's optimizer fuses
                output_loading_info=True,
            )
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise InputError(f"{folder}: transformers cannot load it as a sequence classifier: {_one_line(exc)}") from None
    untrained = _untrained(loading)
    if untrained:
        raise InputError(
            f"{folder}: the weights do not hold {', '.join(untrained[:4])}{' ...' if len(untrained) > 4 else ''}: "
            "transformers would start them at random (a base model, or one saved for another number of classes?)"
        )
    return module.float().eval()  # the fp32 reference, whatever dtype the folder was saved in


def tokenizer_inputs(folder: str | Path) -> tuple[InputSpec, ...]:
    """The inputs the folder's tokenizer gives for one text, as the workbench feeds them (loads the tokenizer)."""
    info = inspect(folder)
    return _tokenizer_inputs(info.folder, info.key)


@cache
def _tokenizer_inputs(folder: Path, files_key: str) -> tuple[InputSpec, ...]:
    tokenizer = _load_tokenizer(_transformers(), folder, inspect(folder).vocab_size)
    return _specs(_input_names(tokenizer, folder))


def _specs(names: tuple[str, ...]) -> tuple[InputSpec, ...]:
    """Batch-first int64 inputs: token ids, the padding mask, zero segment ids."""
    return tuple(InputSpec(name=n, feed=FEEDS[n], dtype="int64", axes=("batch", "sequence")) for n in names)


def load_tokenizer(folder: str | Path) -> Any:
    """The folder's tokenizer (transformers, offline)."""
    info = inspect(folder)
    return _load_tokenizer(_transformers(), info.folder, info.vocab_size)


def transformer_sizes(onnx_path: str | Path) -> tuple[str, int, int] | None:
    """(model_type, num_heads, hidden_size) from an ONNX file's metadata, as the export of a folder wrote them;
    None when the file does not carry them (for ``ort_optimize`` when the recipe leaves the sizes at 0)."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    if not all(props.get(k) for k in (META_MODEL_TYPE, META_HEADS, META_HIDDEN)):
        return None
    return props[META_MODEL_TYPE], int(props[META_HEADS]), int(props[META_HIDDEN])


def load(folder: str | Path) -> HFModel:
    """Load the folder offline (``local_files_only``, safetensors only) as an eval-mode fp32 classifier."""
    info = inspect(folder)
    transformers = _transformers()
    tokenizer = _load_tokenizer(transformers, info.folder, info.vocab_size)
    module = _load_module(transformers, info.folder)
    config = module.config
    info = replace(
        info,
        hidden_size=info.hidden_size or getattr(config, "hidden_size", None),
        num_attention_heads=info.num_attention_heads or getattr(config, "num_attention_heads", None),
    )
    names = _input_names(tokenizer, info.folder)
    wrapper = _logits_only_class()(module, names).eval()
    return HFModel(info, module, wrapper, tokenizer, names, tokenizer.pad_token_id)
