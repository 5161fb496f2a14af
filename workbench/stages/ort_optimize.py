"""``ort_optimize``: onnxruntime's transformer optimizer (``onnxruntime.transformers.optimizer``).

On a recurrent graph it usually finds no transformer fusions; the fusion counts are reported as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from workbench.stages import Facts, Params, Source, stage


class OrtOptimizeParams(Params):
    model_type: Literal["bert", "gpt2", "bart", "t5", "vit", "clip", "unet"] = "bert"
    opt_level: Literal[0, 1, 2, 99] = 1
    num_heads: int = Field(0, ge=0)
    hidden_size: int = Field(0, ge=0)


@stage("ort_optimize", params=OrtOptimizeParams)
def ort_optimize(source: Source, params: OrtOptimizeParams, dst: Path) -> Facts:
    import onnxruntime
    from onnxruntime.transformers import optimizer

    optimized = optimizer.optimize_model(
        str(source.onnx),
        model_type=params.model_type,
        num_heads=params.num_heads,
        hidden_size=params.hidden_size,
        opt_level=params.opt_level,
        use_gpu=False,
    )
    optimized.save_model_to_file(str(dst))
    fusions = {op: int(count) for op, count in optimized.get_fused_operator_statistics().items()}
    return {"onnxruntime": onnxruntime.__version__, "fusions": fusions, "fused_ops": sum(fusions.values())}
