"""The report's **Ship** section, the search's trials table, the latency-against-accuracy-drop chart per target,
and the terminal's closing lines; all read from ``Run.decision`` (decide/ship.py), nothing is computed here
beyond the chart's Pareto front of the figures shown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.decide.ship import Candidate, Choice, Decision, TrialSummary
from workbench.render.markdown import pct, table
from workbench.results import Run

LEGEND = (
    "A candidate is every artifact that ran on the target's engine: each stage of the recipe and each search "
    "trial. It is within the budget when its accuracy drop and its top-1 agreement against PyTorch fp32 on the "
    "evaluation set meet the budget (and its padded batches passed). Among those timed at the target's batch and "
    "length, a candidate counts as faster only when the interval of the speed ratio excludes 1; the candidates "
    "that cannot be told apart from the fastest are a tie, and the smallest file among them ships. `x PyTorch fp32`: "
    "PyTorch fp32's median over the candidate's at the target, with its interval."
)


def section(run: Run) -> list[str]:
    """## Ship: a line per target, why each other candidate lost, the trials, the charts."""
    decision = run.decision
    if decision is None:
        return []
    b = decision.budget
    parts = [
        "## Ship",
        "",
        f"Budget: accuracy drop at most {100 * b.max_accuracy_drop:.2f} points and top-1 agreement at least "
        f"{pct(b.min_agreement)} against PyTorch fp32 ({run.reference.samples} samples).",
        "",
        table(["target", "ship", "file", "latency", "x PyTorch fp32", "bytes", "accuracy drop", "agreement"],
              [_choice_row(c) for c in decision.choices]),
        "",
    ]
    for choice in decision.choices:
        parts += _why(choice)
    parts += [LEGEND, ""] + _trials(decision)
    for choice in decision.choices:
        if choice.shipped is not None:
            parts += [f"![Latency against accuracy drop, {choice.target}]({chart_name(choice)})", ""]
    return parts


def _choice_row(choice: Choice) -> list[str]:
    c, t = choice.chosen, choice.target
    where = f"{t} ({t.threads} threads)"
    if c is None:
        return [where, f"nothing: {choice.reason}", "-", "-", "-", "-", "-", "-"]
    return [where, f"**{c.row}**", f"`{choice.file}`", _latency(c, t.batch), str(c.vs_pytorch or "-"),
            f"{c.bytes:,}" if c.bytes else "-", _points(c.accuracy_drop), pct(c.agreement)]


def _latency(c: Candidate, batch: int) -> str:
    if c.median_ms is None:
        return "-"
    per_s = f", {batch / (c.median_ms / 1000):,.0f} samples/s" if batch > 1 else ""
    return f"{c.median_ms:.2f} ms{per_s}"


def _points(drop: float | None) -> str:
    return "-" if drop is None else f"{100 * drop:+.2f} pts"


def _why(choice: Choice) -> list[str]:
    lines = [f"**{choice.target}**: " + (f"`{choice.shipped}`, {choice.reason}." if choice.shipped else choice.reason + ".")]
    if choice.threads_note:
        lines[0] += f" ({choice.threads_note}.)"
    for c in choice.candidates:
        if c.outcome != "shipped":
            lines.append(f"- `{c.row}`: {c.outcome}: {c.why}")
    return lines + [""]


def _trials(decision: Decision) -> list[str]:
    if decision.search is None:
        return []
    targets = [c.target for c in decision.choices]
    latency = {(c.target.name, cand.row): cand for c in decision.choices for cand in c.candidates}
    rows = []
    for trial in decision.trials:
        for figures in trial.engines or (None,):
            row = figures.row if figures else f"trial{trial.index}"
            timed = [latency.get((t.name, row)) for t in targets]
            rows.append([
                row, trial.label, f"{trial.bytes:,}" if trial.bytes else "-",
                _points(figures.accuracy_drop) if figures else "-", pct(figures.agreement) if figures else "-",
                _verdict(trial, figures), *[_latency(c, t.batch) if c else "-" for c, t in zip(timed, targets)],
                _worst(trial), "yes" if trial.cached else "no",
            ])
    header = ["trial", "varied", "bytes", "accuracy drop", "agreement", "budget",
              *[f"{t}" for t in targets], "worst node alone", "cached"]
    return ["### Search", "", f"{decision.search}.", "", table(header, rows), ""]


def _worst(trial: TrialSummary) -> str:
    """The node whose quantization alone brings the most error, with its torch module and relative error."""
    layers = trial.layer_errors.layers if trial.layer_errors is not None else ()
    if not layers:
        return "-"
    top = layers[0]
    return f"`{top.node}`" + (f" ({top.module})" if top.module else "") + f", {top.relative_error:.1%} rel."


def _verdict(trial: TrialSummary, figures: Any) -> str:
    if trial.error:
        return f"FAILED: {trial.error}"
    if figures is None:
        return "-"
    return "within" if figures.within_budget else f"over: {figures.problem}"


# ---- the chart ------------------------------------------------------------------------------------------------


def chart_name(choice: Choice) -> str:
    return f"ship_{choice.target.name}.png"


def inputs(run: Run) -> dict[str, Any]:
    """What the charts are drawn from (equal inputs draw equal charts)."""
    drawn = run.decision.model_dump(mode="json", exclude={"trials": {"__all__": {"cached"}}}) if run.decision else None
    return {"recipe": run.recipe, "decision": drawn}


def draw(run: Run, folder: Path) -> dict[str, str]:
    """A chart per target with a shipped artifact: {title: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    out: dict[str, str] = {}
    decision = run.decision
    if decision is None:
        return out
    for choice in decision.choices:
        if choice.shipped is not None:
            title = f"Latency against accuracy drop, {choice.target}"
            out[title] = _chart(run.recipe, choice, decision.budget.max_accuracy_drop, folder / chart_name(choice))
    return out


def pareto(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The points no other point beats on both accuracy drop and latency (lower is better), by drop."""
    front: list[tuple[float, float, str]] = []
    for point in sorted(points, key=lambda p: (p[0], p[1])):
        if not front or point[1] < front[-1][1]:
            front.append(point)
    return front


def _chart(recipe: str, choice: Choice, max_drop: float, path: Path) -> str:
    import matplotlib.pyplot as plt

    shown, points = [], []
    for c in choice.candidates:
        if c.median_ms is not None and c.accuracy_drop is not None:
            shown.append(c)
            points.append((100 * c.accuracy_drop, c.median_ms, c.row))
    largest = max((c.bytes or 0) for c in shown) or 1
    fig, axis = plt.subplots(figsize=(7.5, 4.8))
    for c, (x, y, row) in zip(shown, points):
        colour = "#3b75af" if c.within_budget else "#bbbbbb"
        axis.scatter([x], [y], s=40 + 600 * (c.bytes or 0) / largest, color=colour, alpha=0.7, edgecolors="black",
                     linewidths=0.5)
        axis.annotate(row.split(":", 1)[-1], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7)
    front = pareto(points)
    axis.plot([p[0] for p in front], [p[1] for p in front], color="#e1812c", linestyle="--", marker="o", markersize=14,
              markerfacecolor="none", markeredgewidth=2, label="Pareto front (no point both faster and closer)")
    chosen = choice.chosen
    if chosen is not None and chosen.median_ms is not None and chosen.accuracy_drop is not None:
        axis.scatter([100 * chosen.accuracy_drop], [chosen.median_ms], marker="*", s=300, color="#d62728",
                     edgecolors="black", zorder=5, label=f"shipped: {chosen.row}")
    axis.axvline(100 * max_drop, color="grey", linestyle=":", label="budget: largest accuracy drop")
    axis.set_xlabel("accuracy drop against PyTorch fp32, points (marker area: file size; grey: over budget)")
    axis.set_ylabel(f"median latency, ms (batch {choice.target.batch}, length {choice.target.length})")
    axis.set_title(f"{recipe}: {choice.target}")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path.name


# ---- the terminal ---------------------------------------------------------------------------------------------


def terminal_lines(run: Run, report_dir: Path) -> list[str]:
    """The decision in a line per target: what to ship, how fast, how big, how accurate, where it was written."""
    if run.decision is None:
        return []
    out = []
    for choice in run.decision.choices:
        c = choice.chosen
        if c is None:
            out.append(f"ship {choice.target}: nothing ({choice.reason})")
            continue
        out.append(
            f"ship {choice.target}: {c.row}, {_latency(c, choice.target.batch)}, {c.vs_pytorch or '-'} PyTorch fp32, "
            f"{c.bytes or 0:,} bytes, accuracy drop {_points(c.accuracy_drop)} -> {report_dir / str(choice.file)}"
        )
    if run.decision.search:
        out.append(f"search: {run.decision.search}")
    return out
