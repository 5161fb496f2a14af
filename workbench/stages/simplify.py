"""``simplify``: onnx-simplifier (constant folding, dead-node removal), dynamic axes kept."""

from __future__ import annotations

from pathlib import Path

from workbench.errors import StageError
from workbench.stages import Facts, Params, Source, stage


class SimplifyParams(Params):
    optimize: bool = True  # onnxsim's own onnx-optimizer passes


class SimplifyFacts(Facts):
    onnxsim: str

    def lines(self) -> list[str]:
        return [f"tool: onnxsim {self.onnxsim}"]


@stage("simplify", params=SimplifyParams, facts=SimplifyFacts)
def simplify(source: Source, params: SimplifyParams, dst: Path) -> SimplifyFacts:
    import onnx
    import onnxsim

    model = onnx.load(str(source.onnx))
    simplified, ok = onnxsim.simplify(model, perform_optimization=params.optimize)
    if not ok:
        raise StageError("onnxsim could not confirm that the simplified model matches its input")
    onnx.save(simplified, str(dst))
    return SimplifyFacts(onnxsim=onnxsim.__version__)
