"""``ort_optimize``: onnxruntime's transformer optimizer (``onnxruntime.transformers.optimizer``).

On a recurrent graph it usually finds no transformer fusions; the fusion counts are reported as they are.

On a BERT, ``num_heads`` and ``hidden_size`` matter (measured with onnxruntime 1.32 on workbench.zoo's
BertClassifier, 4 heads, hidden 128, TorchScript export):
- left at 0, the optimizer cannot detect them ("Failed to detect num_heads and hidden_size for Attention
  fusion"): it fuses no Attention and no EmbedLayerNormalization, only SkipLayerNormalization, BiasGelu and
  one LayerNormalization; the result is still right, just slower;
- given wrongly (2 or 8 heads), on the raw export it fuses no Attention, but on an onnx-simplified graph
  it fuses Attention with the wrong head count and the logits move by ~0.4 (the fp32 check catches it);
- after onnx-simplifier's own optimizer passes (``simplify: {optimize: true}``), MatMul + Add become
  Reshape/Gemm/Reshape and neither Attention nor EmbedLayerNormalization is fused, whatever the sizes:
  a BERT recipe simplifies with ``optimize: false``.
The optimizer's warnings are kept in the facts, so a fusion it could not do is in the report.

A Hugging Face folder's export carries its config's ``model_type``, which is the architecture's name
(``distilbert``, ``roberta``, ...), not one of the optimizer's graph families: it is mapped the way Optimum's
``ORTConfigManager`` maps it (every BERT-shaped encoder fuses as ``bert``). Given anything else, the optimizer
fuses nothing and hands back a plain model, so a type outside the table fails the stage, naming the table and
the ``model_type`` a recipe can set instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal, get_args

from pydantic import Field, computed_field, model_validator

from workbench.errors import StageError
from workbench.stages import Facts, Params, Source, stage


# Hugging Face config.json model_type -> the optimizer's model_type (Optimum's ORTConfigManager table)
HF_MODEL_TYPES = {
    "albert": "bert", "bart": "bart", "bert": "bert", "big_bird": "bert", "blenderbot": "bert", "bloom": "gpt2",
    "camembert": "bert", "codegen": "gpt2", "deberta": "bert", "deberta-v2": "bert", "distilbert": "bert",
    "electra": "bert", "gpt2": "gpt2", "gpt_bigcode": "gpt2", "gpt_neo": "gpt2", "gpt_neox": "gpt2", "gptj": "gpt2",
    "granite": "gpt2", "llama": "gpt2", "longt5": "bert", "m2m_100": "bart", "marian": "bart", "mbart": "bart",
    "mistral": "gpt2", "mpnet": "bert", "mt5": "bart", "nystromformer": "bert", "pegasus": "bert", "roberta": "bert",
    "t5": "bert", "vit": "vit", "xlm-roberta": "bert",
}  # fmt: skip
OptimizerType = Literal["bert", "gpt2", "bart", "t5", "vit", "clip", "unet"]


class OrtOptimizeParams(Params):
    # None: the type a folder's config names, mapped as Optimum maps it, else bert; set, it wins over the config
    model_type: OptimizerType | None = None
    opt_level: Literal[0, 1, 2, 99] = 1
    num_heads: int = Field(0, ge=0)  # 0: let onnxruntime detect them (it may not: see above)
    hidden_size: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _sizes_fit(self) -> OrtOptimizeParams:
        if (self.num_heads == 0) != (self.hidden_size == 0) or (self.num_heads and self.hidden_size % self.num_heads):
            raise ValueError("give num_heads and hidden_size both (hidden_size a multiple of num_heads) or neither")
        return self


def _sizes_from_metadata(path: Path | None) -> tuple[str, int, int] | None:
    """(model_type, num_heads, hidden_size) the export wrote from a Hugging Face config, if it did."""
    from workbench.huggingface import transformer_sizes

    return transformer_sizes(path) if path is not None else None


class _Warnings(logging.Handler):
    """Collects the optimizer's log warnings (its fusion modules log to loggers named after themselves)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() not in self.messages:
            self.messages.append(record.getMessage())


class OrtOptimizeFacts(Facts):
    onnxruntime: str
    fusions: dict[str, int]  # fused op type -> how many the optimizer made
    sizes: str | None = None  # model type, heads and hidden size, when read from the export's Hugging Face config

    @computed_field  # type: ignore[prop-decorator]
    @property
    def fused_ops(self) -> int:
        return sum(self.fusions.values())

    def lines(self) -> list[str]:
        read = [f"sizes from the model's config: {self.sizes}"] if self.sizes else []
        found = {k: v for k, v in self.fusions.items() if v}
        if found:
            return read + ["fusions found: " + ", ".join(f"{k} {v}" for k, v in found.items())]
        return read + [f"fusions found: none (all {len(self.fusions)} fusion kinds the optimizer knows report 0)"]


def _optimizer_type(config_type: str) -> str:
    if config_type in HF_MODEL_TYPES:
        return HF_MODEL_TYPES[config_type]
    raise StageError(
        f"the model's config.json names model_type {config_type!r}, which onnxruntime's transformer optimizer has "
        f"no fusions for (the types it maps, as Optimum does: {', '.join(sorted(HF_MODEL_TYPES))}); set "
        f"ort_optimize: {{model_type: ...}} to one of {', '.join(get_args(OptimizerType))} if the graph is shaped "
        "like one, or leave the stage out"
    )


@stage("ort_optimize", params=OrtOptimizeParams, facts=OrtOptimizeFacts)
def ort_optimize(source: Source, params: OrtOptimizeParams, dst: Path) -> OrtOptimizeFacts:
    import onnxruntime
    from onnxruntime.transformers import optimizer

    model_type: str = params.model_type or "bert"
    heads, hidden = params.num_heads, params.hidden_size
    read = _sizes_from_metadata(source.onnx) if heads == hidden == 0 else None
    if read is not None:  # a Hugging Face folder's export carries its config's sizes (what Optimum reads)
        config_type, heads, hidden = read
        if params.model_type is None:
            model_type = _optimizer_type(config_type)
    collected = _Warnings()
    logging.getLogger().addHandler(collected)
    try:
        optimized = optimizer.optimize_model(
            str(source.onnx),
            model_type=model_type,
            num_heads=heads,
            hidden_size=hidden,
            opt_level=params.opt_level,
            use_gpu=False,
        )
    finally:
        logging.getLogger().removeHandler(collected)
    optimized.save_model_to_file(str(dst))
    fusions = {op: int(count) for op, count in optimized.get_fused_operator_statistics().items()}
    named = f" (config.json: {read[0]})" if read is not None and read[0] != model_type else ""
    sizes = f"{model_type}{named}, {heads} heads, hidden {hidden}" if read is not None else None
    return OrtOptimizeFacts(
        onnxruntime=onnxruntime.__version__, fusions=fusions, sizes=sizes, warnings=tuple(collected.messages)
    )
