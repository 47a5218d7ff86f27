"""The web demo in a real browser: Debian's chromium driven by Playwright, on a short quickstart run.

    apt-get install -y chromium && pip install -e ".[demo]" && pytest -m browser

Trains the quickstart config (SmolLM2 from ``python -m model.import_gguf``),
writes a small ``python -m eval`` report, starts ``python -m eval.app`` on it and uses the page
as a person would. Saves docs/web_demo.png, the README's screenshot. Minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from eval.stress import check_summary, read_stress

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
DIALOGSUM = ROOT.parent / "shared" / "data" / "dialogsum"
SMOLLM2 = ROOT / "models" / "smollm2-135m-instruct"
SCREENSHOT = ROOT / "docs" / "web_demo.png"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
WAIT_MS = 300_000  # one summary pair takes seconds; two queued ones on a busy 2-core machine, longer


def python(*args: str, timeout: int = 900) -> None:
    """Run ``python args`` in the repository root, failing the test with its output's tail."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"python {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """The quickstart run (adapter, learning curve) with a small DialogSum + enterprise report."""
    pytest.importorskip("gradio", reason='the demo extra is not installed: pip install -e ".[demo]"')
    pytest.importorskip("playwright.sync_api", reason='the demo extra is not installed: pip install -e ".[demo]"')
    if CHROMIUM is None:
        pytest.skip("no chromium: apt-get install -y chromium (or set CHROMIUM to the browser)")
    if not (SMOLLM2 / "config.json").is_file():
        pytest.skip(f"{SMOLLM2} missing: python -m model.import_gguf")
    logs = tmp_path_factory.mktemp("logs")
    # The README's quickstart as it is (20 steps), so the screenshot shows what a new user gets.
    python(
        *("train.py", "fit", "--config", "configs/quickstart.yaml", "--trainer.enable_progress_bar", "false"),
        *("--trainer.logger.init_args.save_dir", str(logs)),
    )
    run = logs / "quickstart" / "version_0"
    sources = f"{{dialogsum: {{path: {DIALOGSUM}}}, enterprise: {{path: data/enterprise}}}}"
    python(
        *("-m", "eval", "--adapter", str(run / "adapter"), "--data.sources", sources, "--limit", "2"),
        *("--stress_limit", "1", "--metrics", "rouge,length", "--model.max_new_tokens", "32", "--no_progress"),
    )
    return run


@pytest.fixture(scope="module")
def app_url(run_dir):
    """``python -m eval.app <run>`` serving on a free local port, until the module's tests end."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(run_dir / "app.log", "w")  # noqa: SIM115 (closed below)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    app = subprocess.Popen(
        [sys.executable, "-m", "eval.app", str(run_dir), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert app.poll() is None, "the app exited:\n" + (run_dir / "app.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the app did not serve within 300 s"
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(2)
        yield url
    finally:
        app.terminate()
        app.wait(30)
        log.close()
    assert (run_dir / "app.log").read_text().count("model loaded in") == 1  # once, for every request


@pytest.fixture(scope="module")
def browser(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.wait_for_selector("#dialogue textarea")
    return page


def summaries(page) -> tuple[str, str]:
    """Click Summarize and wait until both summaries and their word counts are on the page."""
    page.click("#summarize")
    return wait_for_summaries(page)


def wait_for_summaries(page) -> tuple[str, str]:
    for model in ("base", "tuned"):
        page.wait_for_function(f"document.querySelector('#{model}-stats').innerText.includes('words')", timeout=WAIT_MS)
    base, tuned = (page.inner_text(f"#{model}-summary .summary") for model in ("base", "tuned"))
    for model, text in (("base", base), ("tuned", tuned)):
        words, seconds = page.inner_text(f"#{model}-stats").split(" words · ")
        assert int(words) == len(text.split()) and float(seconds.rstrip(" s")) > 0
    return base, tuned


def dialogsum_dialogue(index: int) -> str:
    """A DialogSum validation dialogue short enough for the quickstart's prompts."""
    rows = [json.loads(line) for line in (DIALOGSUM / "dialogsum.dev.jsonl").read_text().splitlines()]
    return [r["dialogue"] for r in rows if len(r["dialogue"]) < 900][index]


def test_a_pasted_dialogue_gets_base_and_fine_tuned_summaries(browser, app_url):
    page = open_page(browser, app_url)
    dialogue = dialogsum_dialogue(0)
    page.fill("#dialogue textarea", dialogue)
    base, tuned = summaries(page)
    for summary in (base, tuned):
        assert summary.strip() and summary != "(empty summary)"
        assert summary.strip() != dialogue.strip()
    assert page.inner_text("#status").strip() == ""  # no warning for a dialogue that fits
    page.close()


def test_stress_example_marks_stated_facts_green_and_superseded_ones_red(browser, app_url):
    page = open_page(browser, app_url)
    page.get_by_role("button", name="stress: change of mind").click()
    page.wait_for_function("document.querySelector('#facts-note').innerText.includes('Stress scenario')")
    dialogue = page.input_value("#dialogue textarea")
    [scenario] = [e for e in read_stress(ROOT / "data" / "enterprise" / "stress.jsonl") if e.dialogue == dialogue]
    must, must_not = scenario.extra["must_state"], scenario.extra["must_not_state"]
    summaries(page)
    for model in ("base", "tuned"):
        box = page.locator(f"#{model}-summary")
        verdict = check_summary(box.locator(".summary").inner_text(), must, must_not)
        green = [t.lower() for t in box.locator("mark.fact-stated").all_inner_texts()]
        red = [t.lower() for t in box.locator("mark.fact-superseded").all_inner_texts()]
        stated = [fact for fact in must if fact not in verdict.missing]
        assert all(any(form in text for fact in stated for form in fact) for text in green)
        assert all(any(form in text for fact in verdict.stated_wrongly for form in fact) for text in red)
        assert bool(green) == bool(stated) and bool(red) == bool(verdict.stated_wrongly)
        checks = box.locator(".fact-checks li").all_inner_texts()
        assert sum(c.startswith("✗ misses") for c in checks) == len(verdict.missing)
        assert sum(c.startswith("✓ states") for c in checks) == len(stated)
        assert box.locator(".fact-verdict").inner_text() == f"stress check {'passes' if verdict.passed else 'fails'}"
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.close()


def test_two_requests_at_once_both_get_answers(browser, app_url):
    pages = [open_page(browser, app_url) for _ in range(2)]
    for index, page in enumerate(pages):
        page.fill("#dialogue textarea", dialogsum_dialogue(index + 1))
    for page in pages:
        page.click("#summarize")  # the second waits in Gradio's queue while the first decodes
    for page in pages:
        base, tuned = wait_for_summaries(page)
        assert base.strip() and tuned.strip()
        page.close()


def test_empty_and_far_too_long_input_get_a_message_not_a_trace(browser, app_url):
    page = open_page(browser, app_url)
    page.click("#summarize")
    page.wait_for_function("document.querySelector('#status').innerText.includes('empty')", timeout=60_000)
    page.fill("#dialogue textarea", "#Person1#: Hello. " * 400)
    page.click("#summarize")
    page.wait_for_function("document.querySelector('#status').innerText.includes('too long')", timeout=60_000)
    assert "Traceback" not in page.content() and page.inner_text("#tuned-summary").strip() == ""
    page.close()


def test_report_tab_filters_and_sorts_the_saved_report(browser, app_url, run_dir):
    report = json.loads((run_dir / "eval" / "test" / "report.json").read_text())
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Evaluation report").click()
    ids = lambda: page.locator('#report-table [role="gridcell"][data-col="0"]').all_inner_texts()  # noqa: E731
    page.wait_for_selector("#report-table")
    assert sorted(ids()) == sorted(row["id"] for row in report["per_example"])
    choose(page, "#report-source", "enterprise")
    enterprise = [row["id"] for row in report["per_example"] if row["source"] == "enterprise"]
    page.wait_for_function(
        f"document.querySelectorAll('#report-table [data-col=\"0\"][role=gridcell]').length == {len(enterprise)}"
    )
    assert sorted(ids()) == sorted(enterprise)
    choose(page, "#report-source", "all sources")
    choose(page, "#report-sort", "Fine-tuned ROUGE-L")
    page.get_by_label("Highest first").check()
    best = sorted(report["per_example"], key=lambda row: -row["scores"]["fine_tuned"]["rougeL"])
    page.wait_for_function(
        f"document.querySelector('#report-table [data-col=\"0\"][role=gridcell]').innerText == {json.dumps(best[0]['id'])}"
    )
    assert "ROUGE-L" in page.inner_text("#report-metrics") and "Stress test" in page.inner_text("#report-metrics")
    assert page.locator("#learning-curve img").count() == 1
    page.close()


def choose(page, dropdown: str, option: str) -> None:
    """Pick ``option`` in a Gradio dropdown."""
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option, exact=True).click()
