"""The README's quick start runs as written, and its commands are the ones CI uses."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _block_after(heading: str) -> str:
    section = README.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no python block after {heading!r}"
    return match.group(1)


@pytest.mark.slow
def test_quick_start_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_block_after("## Quick start"), "README quick start", "exec"), namespace)  # noqa: S102 (our own README)
    pred, band, Z = namespace["pred"], namespace["band"], namespace["Z"]
    assert list(pred.columns) == ["id", "time", "heart_rate", "temperature"]
    assert pred["time"].max() == 60  # extrapolated past the last observation
    assert (band["heart_rate_lower"] <= band["heart_rate_upper"]).all()
    assert Z.shape == (namespace["df"]["id"].nunique(), 8)
    assert (tmp_path / "vitals.latentode").exists()
    # The reloaded model predicts exactly what the fitted one does.
    model, df = namespace["model"], namespace["df"]
    pd.testing.assert_frame_equal(namespace["same"], model.predict(df, times=[0, 12]))
    draws = namespace["draws"]
    assert sorted(draws["sample"].unique()) == list(range(20)) and set(draws["id"]) == {"p0"}
    # It learned: at the observed times, its heart rate is far closer than the training mean.
    observed = model.predict(df, df[["id", "time"]])
    truth = df.sort_values(["id", "time"], kind="stable")["heart_rate"].to_numpy()
    mse = np.mean((observed["heart_rate"].to_numpy() - truth) ** 2)
    assert mse < 0.5 * np.var(truth)


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"^(python -m pytest[^\n]*)$", ci, re.MULTILINE).group(1)
    assert command in README
