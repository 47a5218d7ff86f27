"""A summary as HTML with the stress facts marked: must-state facts it states in green, superseded ones in red.

The verdict is :func:`eval.stress.check_summary`'s (a fact is stated when any of its lowercase forms
is a substring of the lowercased summary); this module only shows where in the text each one sits.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from eval.stress import check_summary

STATED = "fact-stated"  # class of a must-state fact found in the summary (green)
SUPERSEDED = "fact-superseded"  # class of a superseded fact the summary states (red)
STYLES = {STATED: "background:#bbf7d0;color:#14532d", SUPERSEDED: "background:#fecaca;color:#7f1d1d"}


@dataclass
class Facts:
    """A stress scenario's fact lists: each fact a list of alternative lowercase forms."""

    must_state: list[list[str]] = field(default_factory=list)
    must_not_state: list[list[str]] = field(default_factory=list)


def summary_html(summary: str, facts: Facts | None = None) -> str:
    """The summary escaped for HTML, with the stress facts marked and a checklist under it when ``facts`` is given."""
    if not summary.strip():
        return '<div class="summary"><em>(empty summary)</em></div>'
    if facts is None:
        return f'<div class="summary">{html.escape(summary, quote=False)}</div>'
    verdict = check_summary(summary, facts.must_state, facts.must_not_state)
    stated = [fact for fact in facts.must_state if fact not in verdict.missing]
    spans = [(start, end, STATED) for start, end in fact_spans(summary, stated)]
    spans += [(start, end, SUPERSEDED) for start, end in fact_spans(summary, verdict.stated_wrongly)]
    checks = [("ok", f"states {forms(fact)}") for fact in stated]
    checks += [("bad", f"misses {forms(fact)}") for fact in verdict.missing]
    checks += [("bad", f"states superseded {forms(fact)}") for fact in verdict.stated_wrongly]
    checks += [
        ("ok", f"leaves out superseded {forms(f)}") for f in facts.must_not_state if f not in verdict.stated_wrongly
    ]
    items = "".join(
        f'<li class="check-{kind}">{"✓" if kind == "ok" else "✗"} {html.escape(text, quote=False)}</li>'
        for kind, text in checks
    )
    result = "passes" if verdict.passed else "fails"
    return (
        f'<div class="summary">{marked(summary, spans)}</div>'
        f'<div class="fact-verdict verdict-{result}">stress check {result}</div><ul class="fact-checks">{items}</ul>'
    )


def fact_spans(summary: str, facts: list[list[str]]) -> list[tuple[int, int]]:
    """Where any form of any of ``facts`` occurs in ``summary`` (case-insensitive), overlaps merged, in order."""
    text = summary.lower()
    found = []
    for fact in facts:
        for form in fact:
            form = form.lower()
            start = text.find(form)
            while form and start != -1:
                found.append((start, start + len(form)))
                start = text.find(form, start + 1)
    merged: list[tuple[int, int]] = []
    for start, end in sorted(found):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def marked(summary: str, spans: list[tuple[int, int, str]]) -> str:
    """``summary`` escaped, each span wrapped in ``<mark>`` of its class; a span overlapping an earlier one is dropped."""
    out, at = [], 0
    for start, end, kind in sorted(spans):
        if start < at:
            continue
        out.append(html.escape(summary[at:start], quote=False))
        out.append(f'<mark class="{kind}" style="{STYLES[kind]}">{html.escape(summary[start:end], quote=False)}</mark>')
        at = end
    out.append(html.escape(summary[at:], quote=False))
    return "".join(out)


def forms(fact: list[str]) -> str:
    """A fact's forms as the stress report writes them: ``'ten days' / '10 days'``."""
    return " / ".join(repr(form) for form in fact)


def facts_note(facts: Facts) -> str:
    """A Markdown line saying what a stress scenario's summary must state and must leave out."""
    must = "; ".join(forms(f) for f in facts.must_state) or "nothing"
    must_not = "; ".join(forms(f) for f in facts.must_not_state) or "nothing"
    return f"**Stress scenario.** A correct summary states {must}, and leaves out the superseded {must_not}."
