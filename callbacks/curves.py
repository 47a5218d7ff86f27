"""The learning-curve figure, drawn from TensorBoard event files, for one run or several overlaid.

    python -m callbacks.curves logs/quickstart/version_0 --out curve.png
    python -m callbacks.curves logs/quickstart/version_0 logs/quickstart/version_1 --out compare.svg
    python -m callbacks.curves logs/quickstart --out all_versions.png   # every run folder below

Raw ``train/loss`` points are drawn faint, their rolling mean bold, ``val/loss`` as points; the
first and last values are written on the figure. Sized for a 16:9 slide.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from callbacks.smoothing import rolling_mean

EVENTS = "events.out.tfevents.*"
# Colour-blind-safe pairs (Okabe-Ito): one colour per run, validation in a second one for a single run.
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]


@dataclass
class Run:
    """The curves of one run, each as ``{optimizer step: value}``."""

    label: str
    train: dict[int, float] = field(default_factory=dict)
    val: dict[int, float] = field(default_factory=dict)


def read_run(folder: str | Path, label: str | None = None) -> Run:
    """``train/loss`` and ``val/loss`` from the event files directly in ``folder``; later files win.

    ``label`` names the run in the legend; by default the folder's last two path parts.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = Path(folder)
    run = Run(label or "/".join(folder.resolve().parts[-2:]))
    # A resumed run adds an event file to the same folder; reading in name (= time) order lets
    # the points written after the resume replace those the interrupted run wrote past its checkpoint.
    for events in sorted(folder.glob(EVENTS)):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags()["scalars"]
        for tag, series in (("train/loss", run.train), ("val/loss", run.val)):
            if tag in tags:
                series.update({e.step: e.value for e in acc.Scalars(tag)})
    return run


def find_runs(folders: Iterable[str | Path]) -> list[Run]:
    """Every run under ``folders``: each folder that holds event files, in the order given."""
    found: list[Path] = []
    for folder in folders:
        dirs = sorted({p.parent for p in Path(folder).rglob(EVENTS)})
        if not dirs:
            raise FileNotFoundError(f"{folder}: no TensorBoard event files ({EVENTS}) in it or below it")
        found += dirs
    return [read_run(d, label) for d, label in zip(found, short_labels(found), strict=True)]


def short_labels(folders: Sequence[Path]) -> list[str]:
    """The fewest trailing path parts (two at least: ``quickstart/version_0``) that tell the folders apart."""
    parts = [f.resolve().parts for f in folders]
    for n in range(2, max(map(len, parts), default=2) + 1):
        labels = ["/".join(p[-n:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
    return [str(f) for f in folders]


def draw(runs: Sequence[Run], window: int = 6, title: str | None = None):
    """A matplotlib ``Figure`` of the runs' loss curves (no pyplot state, safe in a training process).

    Args:
        runs: the runs to overlay, each in its own colour.
        window: ``train/loss`` points in the rolling mean drawn bold.
        title: the figure's title; default names the run (or says how many are compared).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12.8, 7.2), dpi=100, layout="constrained")  # 16:9; 1920x1080 at dpi 150
    ax = fig.add_subplot()
    single = len(runs) == 1
    for i, run in enumerate(runs):
        color = COLORS[i % len(COLORS)]
        val_color = COLORS[1] if single else color
        steps = sorted(run.train)
        raw = [run.train[s] for s in steps]
        smooth = rolling_mean(raw, window)
        val_steps = sorted(run.val)
        vals = [run.val[s] for s in val_steps]
        if single:
            labels = ("training loss", f"training loss, mean of last {window} points", "validation loss")
        else:  # one legend line a run, its values in it: end labels of several runs would overlap
            labels = (None, f"{run.label}: train {_span(smooth)}, val {_span(vals)}", None)
        ax.plot(steps, raw, color=color, alpha=0.3, linewidth=1.5, label=labels[0])
        (line,) = ax.plot(steps, smooth, color=color, linewidth=3.5, label=labels[1])
        line.set_gid(f"{run.label}:train/loss_smooth")
        (points,) = ax.plot(
            val_steps,
            vals,
            "o",
            color=val_color,
            markersize=10,
            markeredgecolor="white",
            markeredgewidth=1.5,
            label=labels[2],
            zorder=3,
        )
        points.set_gid(f"{run.label}:val/loss")
        if single:
            _annotate_ends(ax, steps, smooth, color, below=False)
            _annotate_ends(ax, val_steps, vals, val_color, below=True)
    if not single:
        ax.text(
            0.99,
            0.02,
            f"faint: training loss; bold: mean of last {window} points; dots: validation loss",
            transform=ax.transAxes,
            ha="right",
            va="bottom",
            fontsize=12,
            color="#444444",
        )
    ax.set_xlabel("optimizer step", fontsize=16)
    ax.set_ylabel("loss (cross-entropy per summary token)", fontsize=16)
    ax.tick_params(labelsize=14)
    ax.grid(True, alpha=0.3)
    ax.margins(x=0.08, y=0.12)  # room for the end labels
    ax.legend(fontsize=13, frameon=False)
    ax.set_title(
        title or (f"Learning curve: {runs[0].label}" if single else f"Learning curves: {len(runs)} runs"), fontsize=18
    )
    return fig


def _span(values: Sequence[float]) -> str:
    """``first -> last`` of a curve, for the legend."""
    if not values:
        return "-"
    return f"{values[0]:.3f}" if len(values) == 1 else f"{values[0]:.3f} \u2192 {values[-1]:.3f}"


def _annotate_ends(ax, steps: Sequence[int], values: Sequence[float], color: str, below: bool) -> None:
    """Write the first and last value next to their points."""
    if not steps:
        return
    ends = [(steps[0], values[0])] + ([(steps[-1], values[-1])] if len(steps) > 1 else [])
    for step, value in ends:
        ax.annotate(
            f"{value:.3f}",
            (step, value),
            xytext=(0, -22 if below else 12),
            textcoords="offset points",
            ha="center",
            fontsize=14,
            fontweight="bold",
            color=color,
        )


def save(fig, *paths: str | Path) -> list[Path]:
    """Write the figure to each path; the format follows the suffix (``.png``, ``.svg``, ``.pdf``)."""
    written = []
    for path in map(Path, paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary name then a rename: TensorBoard users and slides never see half a file.
        tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=150)
        tmp.replace(path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> list[Path]:
    """Redraw the learning curve of one or more runs from their TensorBoard folders."""
    parser = argparse.ArgumentParser(prog="python -m callbacks.curves", description=main.__doc__)
    parser.add_argument("logdirs", nargs="+", help="run folders (logs/NAME/version_N) or their parents")
    parser.add_argument("--out", nargs="+", default=["learning_curve.png"], help="files to write (.png, .svg, .pdf)")
    parser.add_argument("--window", type=int, default=6, help="train/loss points in the rolling mean (default 6)")
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument("--labels", nargs="+", default=None, help="legend names, one a run (default: their folders)")
    args = parser.parse_args(argv)
    try:
        runs = find_runs(args.logdirs)
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")
    if args.labels:
        if len(args.labels) != len(runs):
            sys.exit(f"error: {len(args.labels)} --labels for {len(runs)} runs ({', '.join(r.label for r in runs)})")
        for run, label in zip(runs, args.labels, strict=True):
            run.label = label
    empty = [r.label for r in runs if not r.train and not r.val]
    if len(empty) == len(runs):
        sys.exit(f"error: no train/loss or val/loss scalars in {', '.join(empty)}")
    if empty:  # a run that stopped before its first log point: nothing to draw, and no legend line
        print(f"skipped (no train/loss or val/loss points): {', '.join(empty)}", file=sys.stderr)
        runs = [r for r in runs if r.train or r.val]
    written = save(draw(runs, window=args.window, title=args.title), *args.out)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
