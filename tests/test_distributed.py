"""Data-parallel training under torchrun: 2 CPU processes (gloo on loopback) agree with each other and with 1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from latentode import ODERNN

N_SERIES, LENGTH = 16, 12
"""Equal-length, fully observed series, so per-rank losses are normalised alike and DDP's mean equals 1 process."""

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np, pandas as pd, torch
    torch.set_num_threads(1)
    sys.path.insert(0, os.environ["TEST_DIR"])
    from test_distributed import make_frame, make_model
    import torch.distributed as dist
    out, batch_size, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    model = make_model(batch_size, epochs).fit(make_frame())
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    params = {k: v.tolist() for k, v in model.module_.state_dict().items()}
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"world": world, "params": params, "history": model.history_}, f)
    model.save(f"{out}/model.zip")
    """
)


def make_frame():
    import pandas as pd

    rng = np.random.default_rng(0)
    rows = []
    for i in range(N_SERIES):
        times = np.sort(rng.uniform(0, 5, LENGTH))
        freq, phase = rng.uniform(0.5, 1.0), rng.uniform(0, 6)
        rows += [{"id": i, "time": t, "x": np.sin(freq * t + phase), "y": np.cos(freq * t + phase)} for t in times]
    return pd.DataFrame(rows)


def make_model(batch_size: int, epochs: int) -> ODERNN:
    # Deterministic model and objective (context_fraction=1: no random context draws), float64 for a tight match.
    return ODERNN(hidden_dim=8, ode_hidden_dim=16, context_fraction=1.0, batch_size=batch_size, max_epochs=epochs,
                  validation_fraction=0.0, early_stopping_patience=None, dtype="float64", device="cpu",
                  random_state=0, verbose=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT_ATTEMPTS = 3
"""Launches tried with fresh ports when the rendezvous port was taken between choosing and binding it."""


def _torchrun(args: list[str], env: dict) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --master-addr=127.0.0.1 --master-port=<free> *args``.

    A port picked free can be taken by the time torchrun binds it (another process, or one just released);
    only that failure is retried, with another port.
    """
    for _ in range(PORT_ATTEMPTS):
        command = [sys.executable, "-m", "torch.distributed.run", "--master-addr=127.0.0.1",
                   f"--master-port={_free_port()}", *args]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
        if result.returncode == 0 or "address already in use" not in result.stderr.lower():
            return result
    return result


def _run(tmp_path, nproc: int, batch_size: int, epochs: int) -> list[dict]:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    out = tmp_path / f"out{nproc}"
    out.mkdir()
    env = {**os.environ, "TEST_DIR": os.path.dirname(__file__), "OMP_NUM_THREADS": "1"}
    result = _torchrun([f"--nproc-per-node={nproc}", "--nnodes=1", str(script), str(out), str(batch_size),
                        str(epochs)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(nproc)], out


@pytest.mark.slow
def test_two_ranks_match_each_other_and_one_process_with_double_batch(tmp_path):
    # One epoch = one optimisation step: 2 ranks x batch 8 against 1 process x batch 16.
    two, out2 = _run(tmp_path, 2, batch_size=N_SERIES // 2, epochs=1)
    one, _ = _run(tmp_path, 1, batch_size=N_SERIES, epochs=1)
    assert two[0]["world"] == 2
    for name, value in two[0]["params"].items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(two[1]["params"][name]), err_msg=name)
        np.testing.assert_allclose(np.asarray(value), np.asarray(one[0]["params"][name]), atol=1e-10, err_msg=name)
    # Logged losses are averaged over ranks, and only rank 0 wrote the model file.
    def losses(history):
        return [{k: v for k, v in record.items() if k != "seconds"} for record in history]

    assert losses(two[0]["history"]) == losses(two[1]["history"])
    assert (out2 / "model.zip").exists()
    loaded = ODERNN.load(out2 / "model.zip")
    for name, value in loaded.module_.state_dict().items():
        np.testing.assert_allclose(value.numpy(), np.asarray(two[0]["params"][name]))


@pytest.mark.slow
def test_two_ranks_train_several_epochs_and_finish_identical(tmp_path):
    two, _ = _run(tmp_path, 2, batch_size=4, epochs=3)
    assert len(two[0]["history"]) == 3
    for name, value in two[0]["params"].items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(two[1]["params"][name]), err_msg=name)
    assert torch.isfinite(torch.tensor(two[0]["history"][-1]["train_loss"]))


@pytest.mark.slow
def test_cli_fit_runs_under_torchrun_unchanged(tmp_path):
    data = tmp_path / "train.csv"
    make_frame().to_csv(data, index=False)
    model = tmp_path / "model.lode"
    result = _torchrun(["--nproc-per-node=2", "-m", "latentode", "fit", str(data), "--id-col", "id", "--time-col",
                        "time", "--model", "ode_rnn", "--epochs", "2", "-q", "-o", str(model)],
                       {**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("Saved model") == 1  # rank 0 reports and saves, once
    assert ODERNN.load(model).n_epochs_ == 2


SEED_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, os.environ["TEST_DIR"])
    from test_distributed import make_frame
    import torch.distributed as dist
    from latentode import ODERNN
    from latentode.training import Callback

    class RecordSeed(Callback):
        def on_train_begin(self, trainer):
            self.seed = trainer.seed
            self.valid_rows = len(trainer.valid.times) if trainer.valid is not None else 0

    record = RecordSeed()
    # random_state=None: each process draws its own entropy, and rank 0's seed must win on every rank.
    ODERNN(hidden_dim=8, ode_hidden_dim=16, max_epochs=1, validation_fraction=0.25, device="cpu", verbose=0,
           callbacks=[record]).fit(make_frame())
    with open(f"{sys.argv[1]}/seed{dist.get_rank()}.json", "w") as f:
        json.dump({"seed": record.seed, "valid_rows": record.valid_rows}, f)
    """
)


@pytest.mark.slow
def test_unseeded_fit_uses_one_seed_on_every_rank(tmp_path):
    script = tmp_path / "seed.py"
    script.write_text(SEED_SCRIPT)
    env = {**os.environ, "TEST_DIR": os.path.dirname(__file__), "OMP_NUM_THREADS": "1"}
    result = _torchrun(["--nproc-per-node=2", str(script), str(tmp_path)], env)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"seed{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    assert ranks[0]["valid_rows"] > 0


SINGLE_POINT_SCRIPT = textwrap.dedent(
    """
    import numpy as np, pandas as pd, torch
    torch.set_num_threads(1)
    from latentode import LatentODE
    rng = np.random.default_rng(0)
    # Every series has one point: the encoder's ODE is never used, yet DDP must not fail or warn.
    frame = pd.DataFrame({"id": np.arange(16), "time": rng.uniform(0, 1, 16), "x": rng.normal(size=16)})
    LatentODE(latent_dim=2, hidden_dim=8, encoder_dim=8, max_epochs=2, batch_size=4, device="cpu", verbose=0,
              random_state=0).fit(frame)
    """
)


@pytest.mark.slow
def test_parameters_a_batch_does_not_use_neither_break_nor_warn(tmp_path):
    script = tmp_path / "single.py"
    script.write_text(SINGLE_POINT_SCRIPT)
    result = _torchrun(["--nproc-per-node=2", str(script)], {**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "find_unused_parameters" not in result.stderr


FAILING_RANK_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, os.environ["TEST_DIR"])
    from test_distributed import make_frame
    from latentode import LatentODE
    from latentode.latent_model import LatentODEModel

    original, calls = LatentODEModel.loss, {"n": 0}

    def loss(self, *args, **kwargs):
        calls["n"] += 1
        terms = original(self, *args, **kwargs)
        if os.environ["RANK"] == "1" and calls["n"] == 3:  # rank 1's third step goes non-finite
            terms = type(terms)(**{**vars(terms), "loss": terms.loss * float("nan")})
        return terms

    LatentODEModel.loss = loss
    LatentODE(latent_dim=2, hidden_dim=8, encoder_dim=8, max_epochs=5, batch_size=4, validation_fraction=0.0,
              device="cpu", verbose=0, random_state=0).fit(make_frame())
    """
)


@pytest.mark.slow
def test_a_failure_on_one_rank_stops_every_rank_instead_of_hanging(tmp_path):
    script = tmp_path / "fails.py"
    script.write_text(FAILING_RANK_SCRIPT)
    result = _torchrun(["--nproc-per-node=2", str(script)],
                       {**os.environ, "TEST_DIR": os.path.dirname(__file__), "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0
    assert "The training loss became nan" in result.stderr  # rank 1's own error
    assert "DistributedError" in result.stderr and "Another process of this distributed fit failed" in result.stderr


def test_exit_teardown_lets_gloo_threads_finish_before_destroying_the_group(monkeypatch):
    # gloo's worker threads need the GIL to free a finished collective's Python tensors; destroying the group
    # while one waits for it, at interpreter exit, aborted 3 of 30 2-process launches
    # (benchmarks/distributed_exit.py --no-drain). The teardown sleeps (releasing the GIL) first, then destroys.
    from latentode import distributed

    calls = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed.time, "sleep", lambda seconds: calls.append(("sleep", seconds)))
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: calls.append(("destroy",)))
    distributed._teardown()
    assert calls == [("sleep", distributed.EXIT_DRAIN_SECONDS), ("destroy",)]
    assert distributed.EXIT_DRAIN_SECONDS > 0


def test_exit_teardown_does_nothing_without_a_process_group(monkeypatch):
    from latentode import distributed

    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "destroy_process_group", lambda: pytest.fail("nothing to destroy"))
    distributed._teardown()
