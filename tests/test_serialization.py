"""Saving and loading: identical predictions, a safe format, and clear errors for damaged files."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY
from sklearn.base import clone

from latentode import ODERNN, LatentODE, LatentODEError, ModelFileError, NotFittedError
from latentode.serialization import FILE_FORMAT, config_checksum

TIMES = [-0.5, 0.7, 2.3, 5.6]
"""Query times before, between and after the sine series' observations."""


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("models") / "model.latentode"
    fitted.save(path)
    return path


def rewrite(source: Path, target: Path, *, config=None, weights=None, reseal: bool = True) -> Path:
    """Copy a model file, replacing its config (a function of the parsed JSON) and/or its weights bytes.

    ``reseal`` recomputes the config's checksum after the edit (a deliberate edit that gets past the checksum),
    so that the checks behind it are exercised; ``reseal=False`` leaves it as a careless edit would.
    """
    with zipfile.ZipFile(source) as archive:
        raw_config, raw_weights = archive.read("config.json"), archive.read("weights.pt")
    if config is not None:
        parsed = config(json.loads(raw_config))
        if reseal and isinstance(parsed, dict) and "config_sha256" in parsed:
            parsed["config_sha256"] = config_checksum(parsed)
        raw_config = json.dumps(parsed).encode()
    if weights is not None:
        raw_weights = weights
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("config.json", raw_config)
        archive.writestr("weights.pt", raw_weights)
    return target


def edited(**changes):
    def edit(config):
        config.update(changes)
        return config

    return edit


def test_loaded_model_predicts_the_same_numbers(fitted, saved, sines_test):
    loaded = LatentODE.load(saved)
    pd.testing.assert_frame_equal(loaded.predict(sines_test, TIMES), fitted.predict(sines_test, TIMES))
    np.testing.assert_array_equal(loaded.transform(sines_test), fitted.transform(sines_test))
    pd.testing.assert_frame_equal(
        loaded.sample(sines_test, TIMES, n_samples=5, random_state=0),
        fitted.sample(sines_test, TIMES, n_samples=5, random_state=0),
    )
    pd.testing.assert_frame_equal(
        loaded.predict_interval(sines_test, TIMES, random_state=0),
        fitted.predict_interval(sines_test, TIMES, random_state=0),
    )
    assert loaded.score(sines_test) == fitted.score(sines_test)


def test_loaded_model_keeps_parameters_and_fitted_state(fitted, saved):
    loaded = LatentODE.load(str(saved))
    assert loaded.get_params() == fitted.get_params()
    assert loaded.history_ == fitted.history_
    assert (loaded.n_epochs_, loaded.best_epoch_) == (fitted.n_epochs_, fitted.best_epoch_)
    assert loaded.feature_names_in_.tolist() == fitted.feature_names_in_.tolist()
    assert loaded.time_codec_ == fitted.time_codec_
    assert clone(loaded).get_params() == fitted.get_params()


def test_file_is_a_zip_of_json_and_plain_tensors(saved):
    with zipfile.ZipFile(saved) as archive:
        assert sorted(archive.namelist()) == ["config.json", "weights.pt"]
        config = json.loads(archive.read("config.json"))
        weights = archive.read("weights.pt")
    assert config["format"] == FILE_FORMAT and config["estimator"] == "LatentODE"
    assert config["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    state = torch.load(io.BytesIO(weights), weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.mark.parametrize("kind", ["datetime-tz", "timedelta", "long"])
def test_round_trip_keeps_time_type_and_format(small, tmp_path, kind):
    if kind == "datetime-tz":
        frame = small.assign(time=pd.Timestamp("2024-01-01", tz="Asia/Kolkata") + pd.to_timedelta(small["time"], "h"))
        params = TINY
    elif kind == "timedelta":
        frame = small.assign(time=pd.to_timedelta(small["time"], "min"))
        params = TINY
    else:
        frame = small.melt(id_vars=["id", "time"], var_name="variable", value_name="value").dropna()
        params = {**TINY, "variable_col": "variable", "value_col": "value"}
    model = LatentODE(**params).fit(frame)
    model.save(tmp_path / "m.zip")
    loaded = LatentODE.load(tmp_path / "m.zip")
    queries = frame["time"].drop_duplicates().iloc[:3]
    pd.testing.assert_frame_equal(loaded.predict(frame, queries), model.predict(frame, queries))


@pytest.mark.parametrize("cell", ["ode", "gru_d"])
def test_odernn_round_trip(small, tmp_path, cell):
    model = ODERNN(hidden_dim=8, ode_hidden_dim=8, cell=cell, max_epochs=1, random_state=0, verbose=0).fit(small)
    model.save(tmp_path / "rnn.zip")
    loaded = ODERNN.load(tmp_path / "rnn.zip")
    pd.testing.assert_frame_equal(loaded.predict(small, [0.5, 3.0]), model.predict(small, [0.5, 3.0]))
    with pytest.raises(ModelFileError, match="holds a ODERNN"):
        LatentODE.load(tmp_path / "rnn.zip")


def test_path_parameters_are_saved_as_strings(small, tmp_path):
    model = LatentODE(**{**TINY, "checkpoint_path": tmp_path / "ckpt.pt"}).fit(small)
    model.save(tmp_path / "m.zip")
    assert LatentODE.load(tmp_path / "m.zip").checkpoint_path == str(tmp_path / "ckpt.pt")


def test_saving_an_unfitted_model_raises(tmp_path):
    with pytest.raises(NotFittedError):
        LatentODE(**TINY).save(tmp_path / "m.zip")
    assert not (tmp_path / "m.zip").exists()


def test_load_onto_explicit_device(saved):
    assert LatentODE.load(saved, device="cpu").device_ == torch.device("cpu")


# ---------------------------------------------------------------------------------------------------------
# damaged files


def test_model_file_error_is_a_value_error():
    assert issubclass(ModelFileError, ValueError) and issubclass(ModelFileError, LatentODEError)


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="No model file"):
        LatentODE.load(tmp_path / "nothing.zip")


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_file(saved, tmp_path, fraction):
    data = saved.read_bytes()
    path = tmp_path / "truncated.zip"
    path.write_bytes(data[: int(fraction * len(data))])
    with pytest.raises(ModelFileError, match="truncated"):
        LatentODE.load(path)


def test_not_a_model_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="not a latentode model file"):
        LatentODE.load(text)
    other_zip = tmp_path / "other.zip"
    with zipfile.ZipFile(other_zip, "w") as archive:
        archive.writestr("data.csv", "a,b\n1,2\n")
    with pytest.raises(ModelFileError, match="lacks config.json"):
        LatentODE.load(other_zip)


def weights_data_offsets(path: Path) -> range:
    """Byte offsets, in the file, of the weights member's (compressed) data."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("weights.pt")
    data = path.read_bytes()
    name_length = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_length = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    return range(start, start + info.compress_size)


@pytest.mark.parametrize("position", [0.0, 0.01, 0.3, 0.5, 0.8, 0.999])
def test_flipped_bytes_in_weights(saved, tmp_path, position):
    offsets = weights_data_offsets(saved)
    data = bytearray(saved.read_bytes())
    data[offsets[int(position * (len(offsets) - 1))]] ^= 0xFF
    path = tmp_path / "flipped.zip"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="corrupted|tampered"):
        LatentODE.load(path)


def test_replaced_weights_fail_the_checksum(saved, tmp_path):
    state = torch.load(io.BytesIO(zipfile.ZipFile(saved).read("weights.pt")), weights_only=True)
    name = next(iter(state))
    state[name] = state[name] + 1.0
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = rewrite(saved, tmp_path / "swapped.zip", weights=buffer.getvalue())
    with pytest.raises(ModelFileError, match="checksum"):
        LatentODE.load(path)


@pytest.mark.parametrize(
    "change",
    [
        {"feature_scaler": {"mean_": [9.0], "scale_": [1.0]}},
        {"time_scaler": {"origin_": 0.0, "scale_": 100.0}},
        {"n_epochs": 99},
    ],
    ids=["feature_scaler", "time_scaler", "n_epochs"],
)
def test_edited_config_fails_its_checksum(saved, tmp_path, change):
    path = rewrite(saved, tmp_path / "edited.zip", config=edited(**change), reseal=False)
    with pytest.raises(ModelFileError, match="config.json does not match its recorded checksum"):
        LatentODE.load(path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"time_codec": {"kind": "bogus", "dtype": "float64", "tz": None}}, "time_codec"),
        ({"feature_scaler": {"mean_": [0.0, 1.0, 2.0], "scale_": [1.0, 1.0, 1.0]}}, "feature_scaler"),
        ({"time_scaler": {"origin_": 0.0, "scale_": -1.0}}, "time_scaler"),
        ({"n_epochs": "x"}, "n_epochs"),
        ({"history": "x"}, "history"),
        ({"estimator": ["LatentODE"]}, "estimator is not a string"),
        ({"feature_names": []}, "feature_names"),
    ],
)
def test_resealed_config_with_wrong_types_is_refused(saved, tmp_path, change, match):
    with pytest.raises(ModelFileError, match=match):
        LatentODE.load(rewrite(saved, tmp_path / "typed.zip", config=edited(**change)))


def test_resealed_config_with_a_bad_parameter_is_refused(saved, tmp_path):
    def bad(config):
        config["params"]["batch_size"] = "x"
        return config

    with pytest.raises(ModelFileError, match="batch_size"):
        LatentODE.load(rewrite(saved, tmp_path / "param.zip", config=bad))


def test_bad_device_is_reported_as_such_not_as_a_damaged_file(saved):
    with pytest.raises(ValueError, match="Invalid device") as info:
        LatentODE.load(saved, device="bogus")
    assert not isinstance(info.value, ModelFileError)


def test_model_with_numpy_random_state_and_torch_device_can_be_saved(small, tmp_path):
    model = LatentODE(**{**TINY, "random_state": np.random.RandomState(0), "device": torch.device("cpu")}).fit(small)
    model.save(tmp_path / "numpy.zip")
    loaded = LatentODE.load(tmp_path / "numpy.zip")
    assert loaded.random_state is None and loaded.device == "cpu"
    pd.testing.assert_frame_equal(loaded.predict(small, [0.5]), model.predict(small, [0.5]))


def test_edited_checksum(saved, tmp_path):
    path = rewrite(saved, tmp_path / "edited.zip", config=edited(weights_sha256="0" * 64))
    with pytest.raises(ModelFileError, match="checksum"):
        LatentODE.load(path)


@pytest.mark.parametrize("version", [0, FILE_FORMAT + 1, "1"])
def test_wrong_format_version(saved, tmp_path, version):
    path = rewrite(saved, tmp_path / "version.zip", config=edited(format=version))
    with pytest.raises(ModelFileError, match="format"):
        LatentODE.load(path)


def test_corrupted_json(saved, tmp_path):
    with zipfile.ZipFile(saved) as archive:
        weights = archive.read("weights.pt")
    path = tmp_path / "json.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", b'{"format": 1, "estimator": ')
        archive.writestr("weights.pt", weights)
    with pytest.raises(ModelFileError, match="unreadable config.json"):
        LatentODE.load(path)


def test_config_without_a_key(saved, tmp_path):
    def drop(config):
        del config["feature_scaler"]
        return config

    with pytest.raises(ModelFileError, match="feature_scaler"):
        LatentODE.load(rewrite(saved, tmp_path / "missing.zip", config=drop))


def test_weights_that_do_not_fit_the_parameters(saved, tmp_path):
    def bigger(config):
        config["params"]["latent_dim"] += 1
        return config

    with pytest.raises(ModelFileError, match="does not match"):
        LatentODE.load(rewrite(saved, tmp_path / "bigger.zip", config=bigger))


def test_unknown_estimator(saved, tmp_path):
    with pytest.raises(ModelFileError, match="unknown estimator"):
        LatentODE.load(rewrite(saved, tmp_path / "unknown.zip", config=edited(estimator="Forest")))


class _Payload:
    """Unpickling this would run code; weights_only loading must refuse it."""

    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_weights_that_would_run_code_are_refused(saved, tmp_path, capsys):
    malicious = pickle.dumps({"weight": _Payload()}, protocol=2)
    buffer = io.BytesIO()
    torch.save({"weight": torch.zeros(1)}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as inner:
        members = {name: inner.read(name) for name in inner.namelist()}
    pickled = next(name for name in members if name.endswith("data.pkl"))
    members[pickled] = malicious
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    weights = out.getvalue()
    path = rewrite(saved, tmp_path / "code.zip", weights=weights,
                   config=edited(weights_sha256=hashlib.sha256(weights).hexdigest()))
    with pytest.raises(ModelFileError, match="cannot be read safely"):
        LatentODE.load(path)
    assert "unpickled code ran" not in capsys.readouterr().out
