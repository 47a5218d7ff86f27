"""A web page for a trained run: paste a conversation, see the base and fine-tuned summaries side by side.

    python -m eval.app logs/quickstart/version_0                      # then open http://127.0.0.1:7860
    python -m eval.app logs/quickstart/version_0/adapter --report logs/quickstart/version_0/eval/test/report.json
    python -m eval.app <run>/checkpoints/last.ckpt --host 0.0.0.0 --port 8080

The run is a run folder (its adapter/, else checkpoints/last.ckpt), an adapter folder or a
checkpoint; it is rebuilt from the config.yaml beside it as ``python -m eval`` does, and loads
once. Tab "Summarize": both models decode the conversation greedily (the length control is the
stop bias); the stress scenarios among the examples get their must-state facts marked green and
superseded facts stated marked red. Tab "Evaluation report": a report.json of ``python -m eval``
(default the newest under <run>/eval/), the run's learning curve and metrics. Needs the demo
extra: ``pip install -e ".[demo]"``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from datamodules.sources import DataError
from datamodules.tokenizer import SourceError
from eval.app_model import AppModel, DemoExample
from eval.arguments import DECODERS, parse_with_overrides
from eval.fact_marks import STYLES, facts_note, summary_html
from eval.report_browser import (
    ALL_SOURCES,
    ReportError,
    curve_figure,
    find_report,
    read_report,
    report_markdown,
    report_rows,
    select_rows,
    sort_choices,
    sources,
)

CSS = "".join(f".{kind}{{{style};border-radius:3px;padding:0 2px}}" for kind, style in STYLES.items()) + (
    ".summary{font-size:1.05em;line-height:1.5;min-height:4em}.check-ok{color:#15803d}.check-bad{color:#b91c1c}"
    ".fact-checks{margin:.4em 0 0 1.2em}.verdict-passes{color:#15803d;font-weight:600}"
    ".verdict-fails{color:#b91c1c;font-weight:600}"
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m eval.app",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    p.add_argument("run", help="a run folder, its adapter folder, or a Lightning checkpoint")
    p.add_argument("--config", help="the run's config.yaml (default: the one beside the weights)")
    p.add_argument("--report", help="report.json of python -m eval for the report tab (default: newest in <run>/eval)")
    p.add_argument("--weights", default="dense", choices=("dense", "4bit"), help="dense: dequantized once (fast)")
    p.add_argument("--decoder", default="auto", choices=DECODERS, help="auto (default): CUDA graphs on a GPU")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    return p


def main(argv: list[str] | None = None) -> None:
    """Check the report, load the model once, and serve the page until interrupted."""
    args = parse_with_overrides(parser(), argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline machines: no usage pings
    try:
        report_path = Path(args.report) if args.report else None
        report = read_report(report_path) if report_path else None  # a bad report fails before the model loads
        print("loading the model...", file=sys.stderr)
        model = AppModel.load(args.run, args.config, args.overrides, args.weights, args.device, args.decoder)
        if report_path is None and (report_path := find_report(model.run_dir)):
            report = read_report(report_path)
        examples = model.examples()
    except (DataError, SourceError, ReportError) as err:
        sys.exit(f"error: {err}")
    print(f"model loaded in {model.load_s:.1f} s", file=sys.stderr)
    app = build_app(model, examples, report, report_path)
    app.queue(default_concurrency_limit=1)  # requests wait their turn, and each gets its answer
    app.launch(server_name=args.host, server_port=args.port, css=CSS, theme=theme(), ssr_mode=False)


def build_app(model: AppModel, examples: list[DemoExample], report: dict | None, report_path: Path | None):
    """The two tabs: Summarize, and Evaluation report."""
    import gradio as gr

    weights = model.run.adapter or model.run.ckpt_path
    with gr.Blocks(title="Base vs fine-tuned summaries", analytics_enabled=False) as app:
        gr.Markdown(
            f"## Base vs fine-tuned dialogue summaries\n`{weights}` on `{model.loaded.module.model_name}`; "
            "the base is the same model with its adapter switched off. Both decode greedily."
        )
        with gr.Tab("Summarize"):
            summarize_tab(model, examples)
        with gr.Tab("Evaluation report"):
            report_tab(model, report, report_path)
    return app


def summarize_tab(model: AppModel, examples: list[DemoExample]) -> None:
    """Conversation box, controls and examples; the two summaries side by side under them."""
    import gradio as gr

    facts_by_dialogue = {e.dialogue.strip(): e.facts for e in examples if e.facts}
    dialogue = gr.Textbox(
        label="Conversation", lines=10, max_lines=24, elem_id="dialogue", placeholder="#Person1#: ...\n#Person2#: ..."
    )
    note = gr.Markdown(elem_id="facts-note")
    with gr.Row():
        stop_bias = gr.Slider(-2, 4, value=model.stop_bias, step=0.25, label="Length: stop bias (above 0 ends sooner)")
        max_new = gr.Slider(8, 256, value=model.max_new_tokens, step=8, label="Max new tokens")
        button = gr.Button("Summarize", variant="primary", elem_id="summarize")
    status = gr.Markdown(elem_id="status")
    with gr.Row(equal_height=True):
        with gr.Column():
            gr.Markdown("### Base")
            base = gr.HTML(elem_id="base-summary")
            base_stats = gr.Markdown(elem_id="base-stats")
        with gr.Column():
            gr.Markdown("### Fine-tuned")
            tuned = gr.HTML(elem_id="tuned-summary")
            tuned_stats = gr.Markdown(elem_id="tuned-stats")
    gr.Examples(
        [[e.dialogue] for e in examples],
        inputs=[dialogue],
        example_labels=[e.label for e in examples],
        label="Examples",
    )

    def show_facts(text: str) -> str:
        facts = facts_by_dialogue.get(text.strip())
        return facts_note(facts) if facts else ""

    def summarize(text: str, bias: float, tokens: float):
        check = model.check(text)
        if check.refused:
            return f"**{check.message}**", "", "", "", ""
        result = model.summarize(text, int(tokens), float(bias))
        facts = facts_by_dialogue.get(text.strip())
        stats = lambda summary, seconds: f"{len(summary.split())} words · {seconds:.1f} s"  # noqa: E731
        return (
            check.message,
            summary_html(result.base, facts),
            stats(result.base, result.base_s),
            summary_html(result.fine_tuned, facts),
            stats(result.fine_tuned, result.fine_tuned_s),
        )

    dialogue.change(show_facts, dialogue, note, show_progress="hidden")
    outputs = [status, base, base_stats, tuned, tuned_stats]
    button.click(summarize, [dialogue, stop_bias, max_new], outputs)


def report_tab(model: AppModel, report: dict | None, report_path: Path | None) -> None:
    """The report's examples (sortable, filterable by source), its metrics, and the run's learning curve."""
    import gradio as gr

    if report is None:
        gr.Markdown(
            f"No evaluation report under `{model.run_dir / 'eval'}`. Write one with "
            f"`python -m eval --adapter <run>/adapter ...`, or start the app with `--report <report.json>`."
        )
    else:
        rows = report_rows(report)
        gr.Markdown(f"`{report_path}`: {len(rows)} examples. Human / Base / Fine-tuned with per-example scores.")
        with gr.Row():
            source = gr.Dropdown(sources(rows), value=ALL_SOURCES, label="Source", elem_id="report-source")
            sort_by = gr.Dropdown(sort_choices(rows), value="id", label="Sort by", elem_id="report-sort")
            descending = gr.Checkbox(label="Highest first", value=False)
        widths = [110, 100, 280, 280, 280] + [90] * (len(rows.columns) - 5)  # the summaries get the room
        table = gr.Dataframe(
            rows,
            wrap=True,
            interactive=False,
            max_height=600,
            column_widths=widths,
            elem_id="report-table",
            show_search="search",
        )
        for control in (source, sort_by, descending):
            control.change(lambda *a: select_rows(rows, *a), [source, sort_by, descending], table)
        gr.Markdown(report_markdown(report), elem_id="report-metrics")
    figure = curve_figure(model.run_dir)
    if figure is not None:
        gr.Image(str(figure), label="Learning curve", type="filepath", interactive=False, elem_id="learning-curve")
    else:
        gr.Markdown(f"No learning-curve figure in `{model.run_dir}` (callbacks.losses.LossCurves draws it).")


def theme():
    """Gradio's default look with the system's fonts: an offline machine can't fetch web fonts."""
    import gradio as gr

    system = ["ui-sans-serif", "system-ui", "sans-serif"]
    return gr.themes.Default(font=system, font_mono=["ui-monospace", "monospace"])


if __name__ == "__main__":
    main()
