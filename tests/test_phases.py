"""fit ends with one log line saying how long each phase took."""

from __future__ import annotations

import logging

import pytest

from callbacks.phases import PHASES, FitPhases, parse_phases, phase_line
from tests.conftest import fit_tiny


def test_fit_logs_each_phase_and_they_add_up_to_the_whole(tiny_phi, tmp_path, caplog):
    with caplog.at_level(logging.INFO):
        cli = fit_tiny(tiny_phi, tmp_path, "--trainer.max_steps=12", "--trainer.num_sanity_val_steps=1")
    lines = [r.getMessage() for r in caplog.records if "fit phases: " in r.getMessage()]
    assert len(lines) == 1
    phases = parse_phases(lines[0])
    assert list(phases) == [*PHASES, "whole"]
    # tiny.yaml validates and checkpoints at step 10; the adapter is exported at the end.
    assert all(phases[name] > 0 for name in ("start-up", "compilation", "training steps", "validation"))
    (timer,) = [c for c in cli.trainer.callbacks if isinstance(c, FitPhases)]
    assert timer.seconds["checkpointing"] > 0 and timer.seconds["export"] > 0  # milliseconds for a tiny model
    assert abs(phases["other"]) < 1.0
    assert sum(phases[name] for name in PHASES) == pytest.approx(phases["whole"], abs=0.5)


def test_the_phase_line_reads_back():
    seconds = dict(zip(PHASES, (35.25, 21.0, 96.0, 12.5, 2.0, 0.4, 0.1), strict=True))
    assert parse_phases("noise\n" + phase_line(seconds, 167.2)) == {
        **{k: round(v, 1) for k, v in seconds.items()},
        "whole": 167.2,
    }
