"""Stress test: do summaries of tricky scheduling dialogues state the final facts and omit the retracted ones?

Each stress row carries ``must_state`` and ``must_not_state``: lists of facts, each fact a list of
lowercase alternative forms (``["ten days", "10 days"]``). A fact is stated when any form is a
substring of the lowercased summary. A summary passes when it states every ``must_state`` fact and
no ``must_not_state`` fact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from datamodules.sources import DataError, Example, read_file


@dataclass
class FactCheck:
    """The verdict on one summary: the facts it missed and the ones it should not have stated."""

    missing: list[list[str]] = field(default_factory=list)
    stated_wrongly: list[list[str]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.missing and not self.stated_wrongly

    def describe(self) -> str:
        """The failed facts in a line (empty when it passed)."""
        parts = [f"missing {' / '.join(repr(f) for f in fact)}" for fact in self.missing]
        parts += [f"states {' / '.join(repr(f) for f in fact)}" for fact in self.stated_wrongly]
        return "; ".join(parts)


def check_summary(summary: str, must_state: list[list[str]], must_not_state: list[list[str]]) -> FactCheck:
    """Check one summary: it must contain some form of each ``must_state`` fact, no form of a ``must_not_state`` one."""
    text = summary.lower()
    stated = lambda fact: any(form.lower() in text for form in fact)  # noqa: E731
    return FactCheck(
        missing=[fact for fact in must_state if not stated(fact)],
        stated_wrongly=[fact for fact in must_not_state if stated(fact)],
    )


def read_stress(path: str | Path) -> list[Example]:
    """The stress dialogues, each checked for well-formed ``must_state``/``must_not_state`` lists."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: stress file not found; set --stress to a file or to none")
    examples = read_file(path, "stress")
    for number, example in enumerate(examples, 1):
        for key in ("must_state", "must_not_state"):
            facts = (example.extra or {}).get(key, [])
            ok = isinstance(facts, list) and all(
                isinstance(f, list) and f and all(isinstance(x, str) and x for x in f) for f in facts
            )
            if not ok:
                raise DataError(
                    f"{path}: row {number} ({example.id}): field {key!r} must be a list of lists of strings"
                )
        if not (example.extra or {}).get("must_state") and not (example.extra or {}).get("must_not_state"):
            raise DataError(f"{path}: row {number} ({example.id}): no must_state or must_not_state facts to check")
    return examples


def stress_report(examples: list[Example], summaries: dict[str, list[str]]) -> dict:
    """Pass rates and per-scenario verdicts for each model's summaries."""
    scenarios = []
    passes = dict.fromkeys(summaries, 0)
    for i, example in enumerate(examples):
        extra = example.extra or {}
        row = {"id": example.id, "category": extra.get("category", ""), "topic": example.topic, "results": {}}
        for label, texts in summaries.items():
            verdict = check_summary(texts[i], extra.get("must_state", []), extra.get("must_not_state", []))
            passes[label] += verdict.passed
            row["results"][label] = {
                "passed": verdict.passed,
                "failed": verdict.describe(),
                **asdict(verdict),
                "summary": texts[i],
            }
        scenarios.append(row)
    n = len(examples)
    return {
        "scenarios_total": n,
        "pass_rate": {label: 100 * count / n if n else 0.0 for label, count in passes.items()},
        "passed": passes,
        "scenarios": scenarios,
    }


def stress_markdown(report: dict, labels: dict[str, str]) -> str:
    """The stress report as Markdown: pass rates, then one row per scenario with the failed facts.

    Args:
        report: from :func:`stress_report`.
        labels: model key -> column title, e.g. ``{"base": "Base", "fine_tuned": "Fine-tuned"}``.
    """
    n = report["scenarios_total"]
    lines = ["# Stress test", "", "| model | passed | pass rate |", "| --- | --- | --- |"]
    for key, title in labels.items():
        lines.append(f"| {title} | {report['passed'][key]}/{n} | {report['pass_rate'][key]:.1f}% |")
    lines += [
        "",
        "| scenario | category | " + " | ".join(labels.values()) + " |",
        "| --- | --- |" + " --- |" * len(labels),
    ]
    for row in report["scenarios"]:
        cells = []
        for key in labels:
            result = row["results"][key]
            cells.append("pass" if result["passed"] else f"FAIL: {result['failed']}")
        lines.append(f"| {row['id']} | {row['category']} | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"
