"""The README's quick start runs as written, and its commands are the ones CI uses."""

from __future__ import annotations

import re
from pathlib import Path

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


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"^(python -m pytest[^\n]*)$", ci, re.MULTILINE).group(1)
    assert command in README
