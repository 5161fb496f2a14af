"""``workbench sweep``: several recipes as tasks, in this process or on a Ray cluster, then one table across them.

A task is ``run_task``: a top-level function of a recipe file and parameters that runs the whole recipe where it
lands (sessions are built there) and returns its report folder, with ``task.json`` beside ``metrics.json`` saying
where and when it ran. With benchmarks on, a task takes a whole node, so timings never share a machine with other
work; with ``--no-bench`` it takes one CPU. With ``--machines`` each recipe runs once per CPU type (on a node that
advertises the type), its report in ``reports/<name>@<type>/`` and its own cache per type, so no check or timing
made on one type is served on another; the sweep then prints one column per type. Without a cluster only this
machine's type runs, and the sweep says which it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from rich.console import Console

from workbench import cluster, machines
from workbench.context import CACHE_DIR
from workbench.errors import InputError, WorkbenchError
from workbench.recipe import Recipe
from workbench.results import Run

TASK_FILE = "task.json"


class TaskRecord(BaseModel):
    """Where and when one task ran and what it left; ``task.json`` in its report folder."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recipe: str  # the recipe file
    name: str
    machine: str | None  # the CPU type the task was placed on (None: anywhere)
    cpu_type: str  # the type this node's own flags give (a test cluster on one machine simulates the others)
    cpu_model: str
    node: str  # Ray node id, or the host name in-process
    whole_node: bool  # benchmarks were on: the task held every CPU of its node
    started: float  # unix seconds
    finished: float
    exit_code: int  # run's: 0 passed, 1 a stage failed
    report: str


@dataclass(frozen=True)
class _OnMachine(Recipe):
    """A recipe run for one CPU type: its report one folder down, its cache its own."""

    folder: Path = Path()

    @property
    def report_dir(self) -> Path:
        return self.folder


def on_machine(recipe: Recipe, machine: str) -> Recipe:
    """``recipe`` with its report in ``reports/<name>@<machine>/`` (beside, not inside, the folder a plain ``run``
    replaces whole) and its cache under ``<cache>/machine-<type>`` (layer errors and tuning are measured there too)."""
    root = recipe.settings.cache
    if root is not None and "://" in root:
        cache = f"{root.rstrip('/')}/machine-{machine}"
    else:
        cache = str((recipe.resolve(root) if root else recipe.root / CACHE_DIR) / f"machine-{machine}")
    fields = {f.name: getattr(recipe, f.name) for f in dataclasses.fields(Recipe)}
    fields["settings"] = recipe.settings.model_copy(update={"cache": cache})
    return _OnMachine(**fields, folder=recipe.report_dir.with_name(f"{recipe.report_dir.name}@{machine}"))


def run_task(recipe_path: str, machine: str | None, *, force: bool, threads: int | None, bench: bool) -> str:
    """Run one recipe in this process (for CPU type ``machine`` when given); its report folder."""
    from workbench import environment

    environment.bound_shape_caches()  # a Ray worker process starts here, not in the command line
    from workbench import recipe as recipes
    from workbench.commands.run import run_recipe
    from workbench.store.files import write_atomic

    started = time.time()
    recipe = recipes.load(recipe_path)
    if machine is not None:
        recipe = on_machine(recipe, machine)
    code = run_recipe(recipe, force=force, threads=threads, quiet=True, bench=bench)
    record = TaskRecord(
        recipe=recipe_path, name=recipe.name, machine=machine, cpu_type=machines.cpu_type(),
        cpu_model=machines.cpu_model(), node=cluster.node_id(), whole_node=bench, started=started,
        finished=time.time(), exit_code=code, report=str(recipe.report_dir),
    )
    write_atomic(recipe.report_dir / TASK_FILE, lambda tmp: tmp.write_text(record.model_dump_json(indent=2)))
    return str(recipe.report_dir)


@dataclass(frozen=True)
class Job:
    """One task of a sweep: a recipe, on a CPU type or anywhere."""

    path: Path
    recipe: Recipe
    machine: str | None

    @property
    def label(self) -> str:
        return self.recipe.name + (f" on {self.machine}" if self.machine else "")


@dataclass(frozen=True)
class Outcome:
    job: Job
    task: TaskRecord | None  # None when the task raised a user error
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return self.task.exit_code if self.task else 2


def plan(paths: list[Path], types: tuple[str, ...]) -> list[Job]:
    """One job per recipe, or per (recipe, type); every recipe read first, so a bad one stops the sweep at once."""
    from workbench import recipe as recipes

    loaded = [(path, recipes.load(path)) for path in paths]
    folders = [r.report_dir for _, r in loaded]
    if dupes := sorted({str(f) for f in folders if folders.count(f) > 1}):
        raise InputError(f"sweep: several recipes write the same report folder: {', '.join(dupes)}")
    return [Job(path, recipe, machine) for path, recipe in loaded for machine in (types or (None,))]


def _load_task(report: str) -> TaskRecord:
    return TaskRecord.model_validate_json((Path(report) / TASK_FILE).read_text())


def run_local(jobs: list[Job], *, force: bool, threads: int | None, bench: bool, say: Console) -> list[Outcome]:
    """Every job in this process, one after the other."""
    out = []
    for job in jobs:
        try:
            report = run_task(str(job.path.resolve()), job.machine, force=force, threads=threads, bench=bench)
            out.append(Outcome(job, _load_task(report)))
        except WorkbenchError as exc:
            out.append(Outcome(job, None, str(exc)))
        _said(say, out[-1])
    return out


def run_ray(jobs: list[Job], address: str, *, force: bool, threads: int | None, bench: bool, say: Console) -> list[Outcome]:
    """Every job as a Ray task placed by its CPU type (whole nodes when timing); results gathered in order."""
    joined = cluster.connect(address)
    try:
        return _on_ray(jobs, force=force, threads=threads, bench=bench, say=say)
    finally:
        if joined:
            cluster.disconnect()


def _on_ray(jobs: list[Job], *, force: bool, threads: int | None, bench: bool, say: Console) -> list[Outcome]:
    nodes = cluster.nodes()
    say.print(f"sweep: {len(jobs)} tasks on Ray, {len(nodes)} nodes: "
              + ", ".join(f"{n.id[:8]} ({n.cpus} CPUs, {'/'.join(n.types) or 'no type'})" for n in nodes))
    placements = [cluster.placement(job.machine, whole_node=bench, cluster=nodes) for job in jobs]
    refs = [
        cluster.submit(run_task, options, str(job.path.resolve()), job.machine, force=force, threads=threads, bench=bench)
        for job, options in zip(jobs, placements)
    ]
    out = []
    for job, ref in zip(jobs, refs):
        try:
            out.append(Outcome(job, _load_task(cluster.result(ref))))
        except WorkbenchError as exc:
            out.append(Outcome(job, None, str(exc)))
        _said(say, out[-1])
    return out


def _said(say: Console, outcome: Outcome) -> None:
    task = outcome.task
    if task is None:
        say.print(f"{outcome.job.label}: error: {outcome.error}", soft_wrap=True)
        return
    verdict = {0: "passed", 1: "FAILED"}.get(task.exit_code, f"exit {task.exit_code}")
    say.print(f"{outcome.job.label}: {verdict} in {task.finished - task.started:.1f} s on node {task.node[:12]} "
              f"({task.cpu_model}) -> {task.report}", soft_wrap=True)


def machine_table(outcomes: list[Outcome]) -> tuple[list[str], list[list[str]]]:
    """One recipe's reports by CPU type: a column per type (CPU model, agreement, max error, headline latency)."""
    from workbench.commands.compare import load
    from workbench.runtimes import REFERENCE

    done = [(o.job.machine or "-", o.task, load(Path(o.task.report))) for o in outcomes if o.task]
    header = ["row", "figure", *(machine for machine, _, _ in done)]
    rows = [["machine", "CPU model", *(t.cpu_model for _, t, _ in done)],
            ["machine", "type of its flags", *(t.cpu_type for _, t, _ in done)]]
    names = list(dict.fromkeys(c.row for _, _, run in done for s in run.stages for c in s.checks))
    for name in [REFERENCE, *names] if any(r.bench for _, _, r in done) else names:
        figures = [_figures(run, name) for _, _, run in done]
        for figure in ("agreement", "max abs error", "latency ms"):
            cells = [f.get(figure, "-") for f in figures]
            if any(c != "-" for c in cells):
                rows.append([name, figure, *cells])
    return header, rows


def _figures(run: Run, row: str) -> dict[str, str]:
    """A row's figures in one run, as shown: agreement, max abs error, latency at the headline case."""
    from workbench.render.markdown import sci

    out: dict[str, str] = {}
    check = next((c for s in run.stages for c in s.checks if c.row == row), None)
    if check is not None and check.check is not None:
        out["agreement"] = f"{check.check.comparison.agreement:.2%}"
        out["max abs error"] = sci(check.check.comparison.max_abs_error)
    bench = run.bench
    timing = bench.timing(row, bench.headline) if bench else None
    if bench and timing is not None:
        out["latency ms"] = f"{timing.median_ms:.3f} ({bench.headline})"
    return out


def _print_tables(outcomes: list[Outcome], types: tuple[str, ...], say: Console) -> None:
    from workbench.commands.compare import table
    from workbench.render import terminal

    for name in dict.fromkeys(o.job.recipe.name for o in outcomes) if types else ():
        header, rows = machine_table([o for o in outcomes if o.job.recipe.name == name])
        for part in terminal.tables(header, rows, f"{name}: by machine type", say.width):
            say.print(part)
    for machine in types or (None,):
        folders = [_short(Path(o.task.report)) for o in outcomes if o.task and o.job.machine == machine]
        if not folders:
            continue
        try:
            header, rows, notes = table(folders)
        except InputError as exc:
            say.print(f"compare: {exc}", soft_wrap=True)
            continue
        for part in terminal.tables(header, rows, "compare" + (f" on {machine}" if machine else ""), say.width):
            say.print(part)
        for note in notes:
            say.print(f"- {note}", soft_wrap=True)


def _short(folder: Path) -> Path:
    """``folder`` relative to the working directory when it is below it (compare names columns by folder)."""
    return folder.relative_to(Path.cwd()) if folder.is_relative_to(Path.cwd()) else folder


def sweep(
    paths: list[Path], *, address: str | None, types: tuple[str, ...], force: bool, threads: int | None,
    bench: bool, say: Console,
) -> list[Outcome]:
    """Run every recipe (on every type) in-process or on Ray; print where each ran and the tables; the outcomes."""
    if address is None and types:
        local = machines.cpu_type()
        missing = [t for t in types if t != local]
        say.print(f"sweep: no cluster: running on this machine only, type {local} ({machines.cpu_model()})"
                  + (f"; not run: {', '.join(missing)} (needs --ray and nodes of those types)" if missing else ""))
        types = (local,)
    jobs = plan(paths, types)
    if address is None:
        outcomes = run_local(jobs, force=force, threads=threads, bench=bench, say=say)
    else:
        outcomes = run_ray(jobs, address, force=force, threads=threads, bench=bench, say=say)
    _print_tables(outcomes, types, say)
    return outcomes


def main(args: argparse.Namespace) -> int:
    if args.threads is not None and args.threads < 1:
        raise InputError("--threads must be >= 1")
    types = machines.check(args.machines.split(",")) if args.machines else _recipe_machines(args.recipes)
    outcomes = sweep(
        args.recipes, address=args.ray, types=types, force=args.force, threads=args.threads,
        bench=not args.no_bench, say=Console(),
    )
    return max(o.exit_code for o in outcomes)


def _recipe_machines(paths: list[Path]) -> tuple[str, ...]:
    """The CPU types the recipes name (``machines:``), in order, without repeats: the default for ``--machines``."""
    from workbench import recipe

    return tuple(dict.fromkeys(m for path in paths for m in recipe.load(path).settings.machines))
