"""The ``latentode`` command line: argument parsing and file input/output around the estimators.

Commands: ``demo`` (the embedded spirals job), ``fit``, ``predict``, ``evaluate`` and ``plot``. Parsing ends
in this module; everything below it is called with explicit keyword arguments. Bad input (a missing file or
column, a value the library refuses) exits with status 2 and one line on stderr starting
``latentode: error:``; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["DEMO_MODEL", "EXIT_INPUT_ERROR", "DemoModel", "build_parser", "main"]

PROG = "latentode"

EXIT_INPUT_ERROR = 2
"""Exit status for bad input of any kind (argparse's status for usage errors)."""

EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""

EXIT_BROKEN_PIPE = 141
"""Exit status when stdout is closed early (128 + SIGPIPE), as shells report it."""

DEFAULT_THREADS = 1
"""CPU threads torch uses unless ``--threads`` or ``OMP_NUM_THREADS`` says otherwise.

The models' tensors are small (tens of series by tens of units), so each operation is too short to share
between threads: on a two-core machine shared with other jobs, torch's default of one thread per core made
the demo's epochs five to twenty times slower than one thread.
"""

PARQUET_EXTRA_HINT = 'pip install "latentode[parquet]"'
"""Command that installs what reading and writing Parquet needs."""

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.xz", ".csv.zip")
"""File names ending like this are read and written as CSV (pandas handles the compression)."""

PARQUET_SUFFIXES = (".parquet", ".pq")
"""File names ending like this are read and written as Parquet (needs pyarrow)."""

FIGURE_DPI = 120
"""Resolution of the PNG figures the CLI writes."""

DEMO_N_SERIES = 300
"""Spiral series the demo generates (train and test together)."""

DEMO_N_OBSERVED = 40
"""Observed points per demo spiral (of the 100-point dense grid :func:`make_spirals` draws them from)."""

DEMO_EPOCHS = 60
"""Training epochs of the demo: enough for the spirals' validation MSE to fall to about 5% of its start."""

DEMO_MAX_TIME = 90.0
"""Seconds after which the demo stops training whatever the epoch (a safety cap for slow machines)."""


@dataclass(frozen=True)
class DemoModel:
    """LatentODE settings of the demo: under a second per epoch on one slow CPU core for the default data.

    Smaller than the estimator's defaults, with more (smaller) batches per epoch and a KL warm-up a third of
    the run: on the demo's spirals this learns within :data:`DEMO_EPOCHS` where the defaults need more.
    """

    latent_dim: int = 6
    hidden_dim: int = 32
    encoder_dim: int = 32
    n_samples: int = 1
    batch_size: int = 20
    kl_warmup_epochs: int = 20


DEMO_MODEL = DemoModel()
"""The settings ``latentode demo`` fits with (``--epochs``, ``--max-time``, ``--seed`` and ``--device`` aside)."""

DEMO_TEST_SIZE = 0.2
"""Fraction of the demo's series held out from training and scored."""

DEMO_HIDE_FRACTION = 0.5
"""Interpolation protocol of the demo: this fraction of each held-out series' points is hidden."""

DEMO_CONTEXT_FRACTION = 0.5
"""Extrapolation protocol of the demo: the first this fraction of each held-out series is context."""

DEMO_PLOTTED_SERIES = 2
"""Held-out series drawn in the demo's figure."""

DEMO_OUT = "latentode-demo"
"""Folder the demo writes its figure into unless ``--out`` says otherwise."""

DEMO_FIGURE = "spirals_demo.png"
"""File name of the demo's figure inside ``--out``."""

LOCF_BASELINE = (
    "last observation carried forward: the latest context value of the same series and feature at or before "
    "the hidden time; the earliest one after it where there is none before; the feature's context mean where "
    "the series never observed the feature"
)
"""What the baseline that ``evaluate`` and ``demo`` report is (:func:`latentode.baselines.carry_forward`)."""


class _InputError(Exception):
    """Bad input found by the CLI itself; reported as one line and exit status 2."""


def _input_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean bad input (as opposed to a bug): reported in one line, status 2."""
    from .exceptions import LatentODEError

    return (_InputError, LatentODEError, ValueError, TypeError, OSError, ImportError, FloatingPointError)


# ---------------------------------------------------------------------------------------------------------
# Argument parsing


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors become one-line :class:`_InputError`s instead of exiting."""

    def error(self, message: str):
        raise _InputError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _open_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _noise_std(text: str) -> float | str:
    if text == "learned":
        return text
    try:
        return _positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'learned', got {text!r}") from None


def _debug_parent() -> argparse.ArgumentParser:
    """``--debug`` accepted after the command too; SUPPRESS keeps it from overriding the global flag."""
    parent = _Parser(add_help=False)
    parent.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show the full traceback of an error"
    )
    return parent


def _command(subparsers, name: str, *, help: str, description: str, epilog: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        parents=[_debug_parent()],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


_MAIN_EPILOG = """\
examples:
  latentode demo                                   # spirals: metrics, latentode-demo/spirals_demo.png
  latentode fit data.csv --id-col id --time-col time -o model.lode
  latentode predict model.lode data.csv --times 0,0.5,1 -o predictions.csv
  latentode evaluate model.lode test.csv --protocol extrapolation --json scores.json
  latentode plot model.lode data.csv --ids 3,7 -o series.png

Data files are CSV (.csv) or Parquet (.parquet, .pq; needs pip install "latentode[parquet]"), in the wide
layout (id, time, one column per feature, empty where not observed) or, with --variable-col/--value-col,
the long layout (one observation per row). Run 'latentode COMMAND --help' for each command's options.
"""

_DEMO_EPILOG = f"""\
examples:
  latentode demo                                   # {DEMO_N_SERIES} spirals, about a minute on a laptop CPU
  latentode demo --n-series 100 --epochs 10 --out figures/
  latentode demo --max-time 300 --epochs 200       # a longer run fits better

Generates noisy 2-D spirals (latentode.datasets.make_spirals, {DEMO_N_OBSERVED} irregular points per
series), holds out {DEMO_TEST_SIZE:.0%} of them, fits a LatentODE on the rest and prints, on the held-out
series, the MSE of interpolation ({DEMO_HIDE_FRACTION:.0%} of each series' points hidden) and of extrapolation
(the last {1 - DEMO_CONTEXT_FRACTION:.0%} predicted from the first {DEMO_CONTEXT_FRACTION:.0%}),
each next to last-observation-carried-forward. Then draws {DEMO_PLOTTED_SERIES} held-out series, extrapolated from their
first half, with the truth into DIR/{DEMO_FIGURE}.
"""

_FIT_EPILOG = """\
examples:
  latentode fit train.csv --id-col patient --time-col hour -o model.lode
  latentode fit records.parquet --id-col id --time-col time --variable-col variable --value-col value \\
      --latent-dim 8 --epochs 50 --max-time 600 -o model.lode
  latentode fit train.csv --id-col id --time-col t --model ode_rnn --objective extrapolation -o rnn.lode
  latentode fit train.csv --id-col id --time-col t --checkpoint run.ckpt --resume -o model.lode

Times may be numbers, durations ("0 days 01:30:00", "01:30:00") or datetimes ("2024-05-01 12:00"); a
CSV's time column is read as the first of these that fits all its values. Options left out take the
estimator's defaults (see help(latentode.LatentODE) and help(latentode.ODERNN)). Training shows a
progress bar (hide it with --quiet) and prints the final epoch's metrics, the losses in standardised
units.
"""

_PREDICT_EPILOG = """\
examples:
  latentode predict model.lode context.csv --times 0,0.5,1,1.5 -o predictions.csv
  latentode predict model.lode context.csv --queries queries.csv --interval 0.9 -o predictions.csv
  latentode predict model.lode context.csv --times 2,3 --samples 100 --seed 1 -o draws.parquet
  latentode predict model.lode context.csv --times "2024-05-02 00:00,2024-05-03 00:00" -o out.csv

--times applies the same times to every series in DATA, written in the model's time type: numbers, or
datetimes / durations as pandas parses them ("1h", "01:30:00", "2 days"); write --times=-1,0 when the
first time is negative. --queries names a table of (id, time) rows, in the model's id and time columns,
for per-series times. Naive datetimes (no UTC offset) are taken in the model's time zone. The output has
the id and time columns, then one column per feature in original units; --interval adds <feature>_lower
and <feature>_upper, --samples writes the draws instead with a 'sample' column (both LatentODE only).
"""

_EVALUATE_EPILOG = """\
examples:
  latentode evaluate model.lode test.csv --protocol interpolation
  latentode evaluate model.lode test.csv --protocol extrapolation --fraction 0.75 --json scores.json

interpolation hides a seeded random --fraction (default 0.5) of each series' time points and reconstructs
them from the rest; extrapolation gives the model the first --fraction of each series' time points and
predicts the rest. Prints the mean squared error in original units per feature and over all hidden
observations, next to last-observation-carried-forward.
"""

_PLOT_EPILOG = """\
examples:
  latentode plot model.lode data.csv --ids 3 -o series3.png
  latentode plot model.lode data.csv --ids a,b,c --coverage 0.5 -o series.png
  latentode plot model.lode context.csv --ids 3 --truth truth.csv -o series3.pdf

Draws each series' observations, the posterior mean over a dense grid and (LatentODE) the central
--coverage predictive band, one panel per feature; several --ids are drawn one below the other (PNG or JPEG
output), a single id can go to any format matplotlib writes (.png, .pdf, .svg).
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``latentode`` argument parser with its five commands."""
    parser = _Parser(
        prog=PROG,
        description="Latent ODEs for irregularly sampled time series, from the command line.",
        epilog=_MAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help=f"CPU threads of torch (default: {DEFAULT_THREADS}, or OMP_NUM_THREADS when that is set)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.set_defaults(commands=commands.choices)

    demo = _command(
        commands,
        "demo",
        help="fit spirals, print metrics and write a figure (the README's demo)",
        description="Run the embedded demo: a LatentODE on synthetic irregularly sampled spirals.",
        epilog=_DEMO_EPILOG,
    )
    demo.add_argument(
        "--n-series",
        type=_positive_int,
        default=DEMO_N_SERIES,
        metavar="N",
        help=f"spirals to generate (default: {DEMO_N_SERIES})",
    )
    demo.add_argument(
        "--epochs",
        type=_positive_int,
        default=DEMO_EPOCHS,
        metavar="E",
        help=f"maximum training epochs (default: {DEMO_EPOCHS})",
    )
    demo.add_argument(
        "--max-time",
        type=_positive_float,
        default=DEMO_MAX_TIME,
        metavar="SECONDS",
        help=f"stop training after this many seconds (default: {DEMO_MAX_TIME:g})",
    )
    demo.add_argument(
        "--out", default=DEMO_OUT, metavar="DIR", help=f"folder for the figure (default: {DEMO_OUT})"
    )
    demo.add_argument("--seed", type=int, default=0, help="seed of the data, split and model (default: 0)")
    demo.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N' (default: auto)")
    demo.add_argument("-q", "--quiet", action="store_true", help="hide the progress bar")
    demo.set_defaults(handler=_run_demo)

    fit = _command(
        commands,
        "fit",
        help="fit a model on a table of series and save it",
        description="Fit a LatentODE or ODE-RNN on DATA and save it to MODEL.",
        epilog=_FIT_EPILOG,
    )
    fit.add_argument("data", metavar="DATA", help="training data (.csv, .parquet or .pq)")
    fit.add_argument("-o", "--output", required=True, metavar="MODEL", help="where to save the fitted model")
    columns = fit.add_argument_group("columns")
    columns.add_argument("--id-col", default="id", metavar="COL", help="series id column (default: id)")
    columns.add_argument("--time-col", default="time", metavar="COL", help="time column (default: time)")
    columns.add_argument("--variable-col", metavar="COL", help="long layout: column naming the feature")
    columns.add_argument("--value-col", metavar="COL", help="long layout: column holding the value")
    model = fit.add_argument_group("model (left out: the estimator's default)")
    model.add_argument(
        "--model",
        choices=("latent_ode", "ode_rnn"),
        default="latent_ode",
        help="LatentODE (default) or the deterministic ODE-RNN",
    )
    model.add_argument("--latent-dim", type=_positive_int, metavar="N", help="latent state size (latent_ode)")
    model.add_argument(
        "--hidden-dim",
        type=_positive_int,
        metavar="N",
        help="width of the vector fields and decoder (latent_ode) or GRU state size (ode_rnn)",
    )
    model.add_argument("--objective", choices=("interpolation", "extrapolation"), help="training objective")
    model.add_argument("--epochs", type=_positive_int, metavar="E", help="maximum training epochs")
    model.add_argument("--batch-size", type=_positive_int, metavar="N", help="series per minibatch")
    model.add_argument("--lr", type=_positive_float, metavar="RATE", help="Adam learning rate")
    model.add_argument(
        "--noise-std",
        type=_noise_std,
        metavar="STD",
        help="observation noise std in standardised units, or 'learned' (latent_ode)",
    )
    model.add_argument("--solver", metavar="METHOD", help="torchdiffeq method, e.g. dopri5, rk4, euler")
    model.add_argument("--seed", type=int, help="seed of initialisation and batching (default: random)")
    model.add_argument(
        "--max-time", type=_positive_float, metavar="SECONDS", help="stop training after this long"
    )
    model.add_argument("--device", help="'auto' (default), 'cpu', 'cuda' or 'cuda:N'")
    run = fit.add_argument_group("run")
    run.add_argument("--checkpoint", metavar="PATH", help="save a checkpoint there after every epoch")
    run.add_argument("--resume", action="store_true", help="continue from --checkpoint when it exists")
    run.add_argument("-q", "--quiet", action="store_true", help="hide the progress bar")
    fit.set_defaults(handler=_run_fit)

    predict = _command(
        commands,
        "predict",
        help="predict series at given times and write a table",
        description="Predict the series in DATA at new times with the model in MODEL.",
        epilog=_PREDICT_EPILOG,
    )
    predict.add_argument("model", metavar="MODEL", help="a model saved by 'latentode fit'")
    predict.add_argument("data", metavar="DATA", help="context observations (.csv, .parquet or .pq)")
    where = predict.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--times", metavar="T1,T2,...", help="comma-separated times, the same for every series"
    )
    where.add_argument("--queries", metavar="QUERIES", help="table of (id, time) rows to predict at")
    predict.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="output table (.csv, .parquet or .pq)"
    )
    what = predict.add_mutually_exclusive_group()
    what.add_argument(
        "--interval",
        type=_open_fraction,
        metavar="COVERAGE",
        help="also write the central predictive interval of this coverage, e.g. 0.9",
    )
    what.add_argument(
        "--samples", type=_positive_int, metavar="N", help="write N posterior predictive draws instead"
    )
    predict.add_argument("--seed", type=int, default=0, help="seed of the draws (default: 0)")
    predict.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N' (default: auto)")
    predict.set_defaults(handler=_run_predict)

    evaluate = _command(
        commands,
        "evaluate",
        help="score a model on hidden points against a naive baseline",
        description="Hide points of the series in DATA, predict them with MODEL and print MSEs.",
        epilog=_EVALUATE_EPILOG,
    )
    evaluate.add_argument("model", metavar="MODEL", help="a model saved by 'latentode fit'")
    evaluate.add_argument("data", metavar="DATA", help="series to score (.csv, .parquet or .pq)")
    evaluate.add_argument(
        "--protocol",
        choices=("interpolation", "extrapolation"),
        required=True,
        help="what to hide (see below)",
    )
    evaluate.add_argument(
        "--fraction",
        type=_open_fraction,
        default=0.5,
        help="interpolation: fraction hidden; extrapolation: fraction given (default: 0.5)",
    )
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the interpolation split (default: 0)")
    evaluate.add_argument("--json", metavar="OUT", help="also write the scores to this JSON file")
    evaluate.add_argument(
        "--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N' (default: auto)"
    )
    evaluate.set_defaults(handler=_run_evaluate)

    plot = _command(
        commands,
        "plot",
        help="draw series with the model's predictions",
        description="Draw series of DATA with MODEL's posterior mean and predictive band.",
        epilog=_PLOT_EPILOG,
    )
    plot.add_argument("model", metavar="MODEL", help="a model saved by 'latentode fit'")
    plot.add_argument("data", metavar="DATA", help="context observations (.csv, .parquet or .pq)")
    plot.add_argument(
        "--ids", required=True, metavar="ID1,ID2,...", help="comma-separated ids of series to draw"
    )
    plot.add_argument(
        "-o", "--output", required=True, metavar="FIG", help="figure file (.png, or .pdf/.svg for one id)"
    )
    plot.add_argument(
        "--coverage",
        type=float,
        default=0.9,
        help="coverage of the predictive band; 0 draws none (default: 0.9)",
    )
    plot.add_argument(
        "--truth", metavar="TRUTH", help="table of true values (wide layout) drawn as a dashed line"
    )
    plot.add_argument("--seed", type=int, default=0, help="seed of the band's draws (default: 0)")
    plot.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N' (default: auto)")
    plot.set_defaults(handler=_run_plot)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("latentode")
    except PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------------------
# Tables in and out


def _table_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise _InputError(
        f"Cannot tell the format of {str(path)!r} from its name; use a name ending in "
        f"{', '.join(CSV_SUFFIXES[:1] + PARQUET_SUFFIXES)}."
    )


def _require_pyarrow(path: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("pyarrow") is None:
        raise _InputError(
            f"Parquet file {str(path)!r} needs the optional package pyarrow: {PARQUET_EXTRA_HINT}"
        )


def _time_parsers(kind: str | None) -> list:
    """Converters from strings to the time type ``kind`` ("numeric", "timedelta", "datetime"; None: any)."""
    datetimes = [
        pd.to_datetime,  # one format, inferred from the first value
        lambda v: pd.to_datetime(v, format="ISO8601"),  # ISO 8601 of varying precision ("2024-01-02 12:00")
        lambda v: pd.to_datetime(v, format="ISO8601", utc=True),  # several UTC offsets (daylight saving)
    ]
    return {
        "numeric": [pd.to_numeric],
        "timedelta": [pd.to_timedelta],
        "datetime": datetimes,
        None: [pd.to_timedelta, *datetimes],
    }[kind]


def _parse_times(values: pd.Series, *, column: str, source: str, kind: str | None) -> pd.Series:
    """A CSV time column as numbers, timedeltas or datetimes (``kind`` forces one; None infers).

    Durations are tried before datetimes: pandas would read a duration such as "01:30:00" as a time of day
    on today's date, while no datetime string parses as a duration.
    """
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return values
    parsers = _time_parsers(kind)
    parsed = _first_parse(values, parsers)
    if parsed is not None:
        return parsed
    expected = {"numeric": "numbers", "timedelta": "durations", "datetime": "datetimes"}.get(
        kind, "numbers, durations or datetimes"
    )
    example = _first_unparsable(values, parsers)
    why = f" (the model was fitted on {kind} times)" if kind is not None else ""
    raise _InputError(
        f"Time column {column!r} of {source!r} does not hold {expected}{why}; for example {example!r}."
    )


_EXAMPLES_SEARCHED = 1000
"""An error about an unparsable time column quotes the first bad one among this many distinct values."""


def _first_parse(values: pd.Series, parsers: list) -> pd.Series | None:
    """``values`` converted by the first of ``parsers`` that accepts them all; None if none does."""
    for parse in parsers:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pandas' format-inference chatter
                return parse(values)
        except (ValueError, TypeError, OverflowError):
            continue
    return None


def _first_unparsable(values: pd.Series, parsers: list) -> str:
    """The first value (among the first distinct ones) that no parser accepts on its own, for messages."""
    candidates = pd.unique(values.dropna())[:_EXAMPLES_SEARCHED]
    for value in candidates:
        if _first_parse(pd.Series([value]), parsers) is None:
            return str(value)
    return str(candidates[0]) if len(candidates) else ""


def _read_table(
    path: str, *, what: str, time_col: str | None = None, time_kind: str | None = None
) -> pd.DataFrame:
    """Read a CSV or Parquet file; in a CSV, parse ``time_col`` (see :func:`_parse_times`)."""
    file = Path(path)
    fmt = _table_format(file)
    if not file.exists():
        raise _InputError(f"{what} {path!r} does not exist.")
    if file.is_dir():
        raise _InputError(f"{what} {path!r} is a folder, not a file.")
    if fmt == "parquet":
        _require_pyarrow(file)
    try:
        frame = pd.read_csv(file) if fmt == "csv" else pd.read_parquet(file)
    except (ValueError, OSError) as error:
        raise _InputError(f"Cannot read {what.lower()} {path!r}: {error}") from error
    if fmt == "csv" and time_col is not None and time_col in frame.columns:
        frame[time_col] = _parse_times(frame[time_col], column=time_col, source=path, kind=time_kind)
    return frame


def _check_columns(frame: pd.DataFrame, columns: dict[str, str | None], source: str) -> None:
    """Refuse a table that lacks a column; ``columns`` maps what the column is for to its name."""
    for role, name in columns.items():
        if name is not None and name not in frame.columns:
            raise _InputError(
                f"{source!r} has no column {name!r} ({role}); its columns are {list(frame.columns)}."
            )


def _write_table(frame: pd.DataFrame, path: str) -> None:
    file = Path(path)
    fmt = _table_format(file)
    if fmt == "parquet":
        _require_pyarrow(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        frame.to_csv(file, index=False)
    else:
        frame.to_parquet(file, index=False)


def _load_model(path: str, device: str):
    from .serialization import load_estimator

    return load_estimator(path, device=device)


def _model_columns(model) -> dict[str, str | None]:
    return {
        "series id": model.id_col,
        "time": model.time_col,
        "variable": model.variable_col,
        "value": model.value_col,
    }


def _in_model_zone(times: pd.Series, codec) -> pd.Series:
    """Naive datetimes localised to the time zone of a model fitted on timezone-aware ones."""
    if codec.kind == "datetime" and codec.tz is not None and pd.api.types.is_datetime64_dtype(times.dtype):
        return times.dt.tz_localize(codec.tz)
    return times


def _read_for_model(
    model, path: str, *, what: str, columns: dict[str, str | None] | None = None
) -> pd.DataFrame:
    """A table in the model's columns, its CSV time column parsed as the model's time type."""
    frame = _read_table(path, what=what, time_col=model.time_col, time_kind=model.time_codec_.kind)
    _check_columns(frame, _model_columns(model) if columns is None else columns, path)
    frame[model.time_col] = _in_model_zone(frame[model.time_col], model.time_codec_)
    return frame


def _parse_time_list(text: str, codec) -> pd.Series:
    """``--times`` as a Series in the model's time type (its :class:`~latentode.TimeCodec` ``codec``)."""
    kind = codec.kind
    items = [item.strip() for item in text.split(",")]
    if not items or any(item == "" for item in items):
        raise _InputError(f"--times {text!r} has an empty entry; give comma-separated times such as 0,0.5,1.")
    if kind == "timedelta":
        bare = [item for item in items if _is_number(item)]
        if bare:
            raise _InputError(
                f"--times value {bare[0]!r} has no unit, but the model was fitted on durations; write e.g. "
                f"'{bare[0]}s', '{bare[0]}h' or '0 days 01:00:00'."
            )
    parsers = _time_parsers(kind)
    times = _first_parse(pd.Series(items), parsers)
    if times is None:
        expected = {
            "numeric": "a number",
            "timedelta": "a duration such as '1h' or '01:30:00'",
            "datetime": "a datetime such as '2024-05-01 12:00'",
        }[kind]
        bad = _first_unparsable(pd.Series(items), parsers)
        raise _InputError(
            f"Bad --times value {bad!r}: expected {expected} (the model was fitted on {kind} times)."
        )
    times = _in_model_zone(times, codec)
    if kind == "numeric":
        dtype = pd.api.types.pandas_dtype(codec.dtype)
        whole = bool((times == times.round()).all())
        if pd.api.types.is_float_dtype(dtype) or (pd.api.types.is_integer_dtype(dtype) and whole):
            times = times.astype(dtype)
    return times


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------------------------------
# Scoring hidden points (evaluate, demo)


def _observations(frame: pd.DataFrame, model, *, value: str) -> pd.DataFrame:
    """Observed entries of a wide or long frame as rows (id, time, ``__feature``, ``value``)."""
    id_col, time_col = model.id_col, model.time_col
    features = [str(f) for f in model.feature_names_in_]
    if model.variable_col is not None:
        rows = frame[[id_col, time_col, model.variable_col, model.value_col]].rename(
            columns={model.variable_col: "__feature", model.value_col: value}
        )
        rows["__feature"] = rows["__feature"].astype(str)
    else:
        wide = frame.rename(columns={c: str(c) for c in frame.columns})
        present = [f for f in features if f in wide.columns]
        rows = wide.melt(
            id_vars=[id_col, time_col], value_vars=present, var_name="__feature", value_name=value
        )
    rows = rows[rows["__feature"].isin(features)]
    return rows.dropna(subset=[value]).reset_index(drop=True)


def _melted(frame: pd.DataFrame, model, *, value: str) -> pd.DataFrame:
    """A wide prediction frame (id, time, one column per feature) as rows (id, time, ``__feature``, ``value``)."""
    id_col, time_col = model.id_col, model.time_col
    frame = frame.rename(columns={c: str(c) for c in frame.columns}).drop_duplicates([id_col, time_col])
    present = [str(f) for f in model.feature_names_in_ if str(f) in frame.columns]
    return frame.melt(id_vars=[id_col, time_col], value_vars=present, var_name="__feature", value_name=value)


def _score_hidden(model, context: pd.DataFrame, hidden: pd.DataFrame) -> dict:
    """MSEs (original units) of the model's predictions of ``hidden`` from ``context``, and of LOCF."""
    from .baselines import carry_forward

    id_col, time_col = model.id_col, model.time_col
    targets = _observations(hidden, model, value="__truth")
    if targets.empty:
        raise _InputError(
            "Nothing to score: the split left no hidden observations (are the series too short?)."
        )
    queries = targets[[id_col, time_col]].drop_duplicates().reset_index(drop=True)
    keys = [id_col, time_col, "__feature"]
    predicted = _melted(model.predict(context, queries), model, value="__predicted")
    locf = carry_forward(context, queries, id_col=id_col, time_col=time_col, variable_col=model.variable_col,
                         value_col=model.value_col)
    scored = targets.merge(predicted, on=keys, how="left", validate="many_to_one").merge(
        _melted(locf, model, value="__locf"), on=keys, how="left", validate="many_to_one"
    )
    # A feature the series never observed in its context falls back to the feature's context mean.
    means = _observations(context, model, value="__context").groupby("__feature")["__context"].mean()
    scored["__locf"] = scored["__locf"].fillna(scored["__feature"].map(means))
    scored["__model_se"] = (scored["__predicted"] - scored["__truth"]) ** 2
    scored["__locf_se"] = (scored["__locf"] - scored["__truth"]) ** 2
    per_feature = scored.groupby("__feature", sort=False)
    features = [str(f) for f in model.feature_names_in_ if str(f) in set(scored["__feature"])]
    return {
        "n_series": int(targets[id_col].nunique()),
        "n_hidden": len(scored),
        "mse": {
            "overall": float(scored["__model_se"].mean()),
            "per_feature": {f: float(per_feature["__model_se"].mean()[f]) for f in features},
        },
        "locf_mse": {
            "overall": float(scored["__locf_se"].mean()),
            "per_feature": {f: float(per_feature["__locf_se"].mean()[f]) for f in features},
        },
        "n_hidden_per_feature": {f: int(per_feature.size()[f]) for f in features},
    }


def _split(model, frame: pd.DataFrame, *, protocol: str, fraction: float, seed: int | None):
    from .splits import extrapolation_split, interpolation_split

    columns = {"id_col": model.id_col, "time_col": model.time_col, "variable_col": model.variable_col}
    if protocol == "interpolation":
        return interpolation_split(frame, hide_fraction=fraction, random_state=seed, **columns)
    return extrapolation_split(frame, context_fraction=fraction, **columns)


def _print_scores(title: str, scores: dict) -> None:
    print(f"{title}: {scores['n_hidden']} hidden observations in {scores['n_series']} series")
    names = list(scores["mse"]["per_feature"]) + ["overall"]
    width = max(len(n) for n in names + ["feature"])
    print(f"  {'feature':<{width}}  {'model MSE':>12}  {'LOCF MSE':>12}")
    for name in names:
        model_mse = scores["mse"]["overall"] if name == "overall" else scores["mse"]["per_feature"][name]
        locf_mse = (
            scores["locf_mse"]["overall"] if name == "overall" else scores["locf_mse"]["per_feature"][name]
        )
        print(f"  {name:<{width}}  {model_mse:>12.5g}  {locf_mse:>12.5g}")


# ---------------------------------------------------------------------------------------------------------
# Figures


def _use_agg() -> None:
    """Draw off-screen: the CLI only writes files."""
    import matplotlib

    matplotlib.use("Agg")


_STACKABLE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""Raster formats into which several figures are saved one below the other."""


def _save_figures(figures: list, path: str) -> None:
    """Save one figure as it is, or several one below the other into a raster image."""
    import matplotlib.pyplot as plt

    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    if len(figures) == 1:
        figures[0].savefig(file, dpi=FIGURE_DPI)
        plt.close(figures[0])
        return
    assert file.suffix.lower() in _STACKABLE_SUFFIXES, "callers check the suffix before drawing"
    images = []
    for figure in figures:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
        plt.close(figure)
        buffer.seek(0)
        images.append(plt.imread(buffer))
    width = max(image.shape[1] for image in images)
    padded = [
        np.pad(image, ((0, 0), (0, width - image.shape[1]), (0, 0)), constant_values=1.0) for image in images
    ]
    stacked = np.concatenate(padded, axis=0)
    if file.suffix.lower() != ".png":
        stacked = stacked[..., :3]
    plt.imsave(file, stacked)


def _parse_ids(text: str, available: pd.Series) -> list:
    """``--ids`` converted to the id column's type, each checked to be present."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise _InputError("--ids is empty; give comma-separated series ids.")
    present = pd.unique(available)
    ids = []
    for item in items:
        value = item
        if pd.api.types.is_integer_dtype(available.dtype) and _is_number(item) and float(item).is_integer():
            value = int(float(item))
        elif pd.api.types.is_float_dtype(available.dtype) and _is_number(item):
            value = float(item)
        if value not in set(present.tolist()):
            shown = ", ".join(str(v) for v in present[:5]) + (" ..." if len(present) > 5 else "")
            raise _InputError(f"Series id {item!r} is not in the data; its ids are {shown}.")
        ids.append(value)
    return ids


# ---------------------------------------------------------------------------------------------------------
# Commands


_FIT_OPTIONS = (
    # (argparse dest, estimator parameter, models it applies to)
    ("latent_dim", "latent_dim", ("latent_ode",)),
    ("hidden_dim", "hidden_dim", ("latent_ode", "ode_rnn")),
    ("objective", "objective", ("latent_ode", "ode_rnn")),
    ("epochs", "max_epochs", ("latent_ode", "ode_rnn")),
    ("batch_size", "batch_size", ("latent_ode", "ode_rnn")),
    ("lr", "learning_rate", ("latent_ode", "ode_rnn")),
    ("noise_std", "noise_std", ("latent_ode",)),
    ("solver", "solver", ("latent_ode", "ode_rnn")),
    ("seed", "random_state", ("latent_ode", "ode_rnn")),
    ("max_time", "max_time", ("latent_ode", "ode_rnn")),
    ("device", "device", ("latent_ode", "ode_rnn")),
)
"""How ``fit``'s model options map onto estimator parameters; options left out keep the estimator default."""


def _run_fit(args: argparse.Namespace) -> int:
    from .estimator import ODERNN, LatentODE

    if (args.variable_col is None) != (args.value_col is None):
        raise _InputError("--variable-col and --value-col go together (long layout); give both or neither.")
    if args.resume and args.checkpoint is None:
        raise _InputError("--resume needs --checkpoint PATH (the checkpoint to continue from).")
    params = {
        "id_col": args.id_col,
        "time_col": args.time_col,
        "variable_col": args.variable_col,
        "value_col": args.value_col,
        "checkpoint_path": args.checkpoint,
        "resume": args.resume,
        "verbose": 0 if args.quiet else 1,
    }
    for dest, name, models in _FIT_OPTIONS:
        value = getattr(args, dest)
        if value is None:
            continue
        if args.model not in models:
            raise _InputError(f"--{dest.replace('_', '-')} applies to --model {' or '.join(models)} only.")
        params[name] = value
    estimator = (LatentODE if args.model == "latent_ode" else ODERNN)(**params)
    output = Path(args.output)
    if output.is_dir():
        raise _InputError(f"Output {args.output!r} is a folder; give a file name for the model.")
    _check_writable(output)
    frame = _read_table(args.data, what="Data file", time_col=args.time_col)
    _check_columns(
        frame,
        {
            "--id-col": args.id_col,
            "--time-col": args.time_col,
            "--variable-col": args.variable_col,
            "--value-col": args.value_col,
        },
        args.data,
    )
    started = time.perf_counter()
    estimator.fit(frame)
    elapsed = time.perf_counter() - started
    output.parent.mkdir(parents=True, exist_ok=True)
    estimator.save(output)
    from . import distributed

    if not distributed.is_main_process():  # under torchrun, rank 0 reports for all
        return 0
    last = estimator.history_[-1] if estimator.history_ else {}
    print(
        f"Trained {type(estimator).__name__} on {frame[args.id_col].nunique()} series for "
        f"{estimator.n_epochs_} epochs in {elapsed:.1f} s "
        f"(best epoch {estimator.best_epoch_}, whose weights are kept)."
    )
    print("Final epoch (losses and MSEs in standardised units):")
    for key, value in last.items():
        print(f"  {key:<11} {value:.6g}" if isinstance(value, float) else f"  {key:<11} {value}")
    print(f"Saved model to {output}")
    return 0


def _check_writable(output: Path) -> None:
    """Refuse, before training, an output file that could not be written afterwards."""
    folder = output.parent
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise _InputError(f"Cannot write {str(output)!r}: {str(existing)!r} is not a writable folder.")
    if folder.exists():
        probe = folder / f".{output.name}.{os.getpid()}.probe"
        try:
            probe.touch()
            probe.unlink()
        except OSError as error:
            raise _InputError(f"Cannot write {str(output)!r} ({error.strerror or error}); choose another path.") from None


def _check_output_table(path: str) -> None:
    """Refuse an output name of unknown format before any work is done."""
    file = Path(path)
    if _table_format(file) == "parquet":
        _require_pyarrow(file)
    if file.is_dir():
        raise _InputError(f"Output {path!r} is a folder; give a file name.")


def _run_predict(args: argparse.Namespace) -> int:
    _check_output_table(args.output)
    model = _load_model(args.model, args.device)
    frame = _read_for_model(model, args.data, what="Data file")
    if args.times is not None:
        times = _parse_time_list(args.times, model.time_codec_)
    else:
        columns = {"series id": model.id_col, "time": model.time_col}
        times = _read_for_model(model, args.queries, what="Queries file", columns=columns)
        times = times[[model.id_col, model.time_col]]
    if (args.samples is not None or args.interval is not None) and not hasattr(model, "sample"):
        option = "--samples" if args.samples is not None else "--interval"
        raise _InputError(
            f"{option} needs a LatentODE; {args.model!r} holds a model of type {type(model).__name__}."
        )
    if args.samples is not None:
        out = model.sample(frame, times, n_samples=args.samples, random_state=args.seed)
    else:
        out = model.predict(frame, times)
        if args.interval is not None:
            band = model.predict_interval(frame, times, coverage=args.interval, random_state=args.seed)
            keys = [model.id_col, model.time_col]
            # Both tables list the same (id, time) queries in the same order: join them row by row.
            if not out[keys].equals(band[keys]):
                raise RuntimeError("predict and predict_interval returned different (id, time) rows.")
            out = pd.concat([out, band.drop(columns=keys)], axis=1)
    _write_table(out, args.output)
    print(f"Wrote {len(out)} rows ({out[model.id_col].nunique()} series) to {args.output}")
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    model = _load_model(args.model, args.device)
    frame = _read_for_model(model, args.data, what="Data file")
    context, hidden = _split(model, frame, protocol=args.protocol, fraction=args.fraction, seed=args.seed)
    scores = _score_hidden(model, context, hidden)
    what = "hidden" if args.protocol == "interpolation" else "given as context"
    title = f"{args.protocol} ({args.fraction:g} of each series' time points {what})"
    _print_scores(title, scores)
    if args.json is not None:
        report = {
            "model": str(args.model),
            "data": str(args.data),
            "protocol": args.protocol,
            "fraction": args.fraction,
            "seed": args.seed if args.protocol == "interpolation" else None,
            "units": "original",
            "baseline": LOCF_BASELINE,
            **scores,
        }
        file = Path(args.json)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(report, indent=2) + "\n")
        print(f"Wrote scores to {file}")
    return 0


def _run_plot(args: argparse.Namespace) -> int:
    _use_agg()
    from .plotting import plot_series

    if not 0 <= args.coverage < 1:
        raise _InputError(f"--coverage must be in [0, 1), got {args.coverage}.")
    model = _load_model(args.model, args.device)
    frame = _read_for_model(model, args.data, what="Data file")
    truth = None
    if args.truth is not None:
        columns = {"series id": model.id_col, "time": model.time_col}
        truth = _read_for_model(model, args.truth, what="Truth file", columns=columns)
    ids = _parse_ids(args.ids, frame[model.id_col])
    if len(ids) > 1 and Path(args.output).suffix.lower() not in _STACKABLE_SUFFIXES:
        raise _InputError(
            f"Several series are drawn one below the other into a PNG or JPEG; {args.output!r} is neither. "
            "Use a .png name, or draw one id per command."
        )
    coverage = args.coverage or None
    figures = [
        plot_series(model, frame, i, coverage=coverage, truth=truth, random_state=args.seed) for i in ids
    ]
    _save_figures(figures, args.output)
    print(f"Wrote a figure of {len(ids)} series to {args.output}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    _use_agg()
    from .datasets import make_spirals
    from .estimator import LatentODE
    from .plotting import plot_series
    from .splits import train_test_split_series

    started = time.perf_counter()
    observed, truth = make_spirals(n_series=args.n_series, n_observed=DEMO_N_OBSERVED, random_state=args.seed)
    train, test = train_test_split_series(observed, test_size=DEMO_TEST_SIZE, random_state=args.seed)
    print(
        f"Spirals: {train['id'].nunique()} training and {test['id'].nunique()} held-out series, "
        f"{DEMO_N_OBSERVED} irregular noisy points each."
    )
    fit_started = time.perf_counter()
    model = LatentODE(
        **asdict(DEMO_MODEL),
        max_epochs=args.epochs,
        max_time=args.max_time,
        device=args.device,
        random_state=args.seed,
        verbose=0 if args.quiet else 1,
    ).fit(train)
    print(
        f"Trained a LatentODE for {model.n_epochs_} epochs in {time.perf_counter() - fit_started:.1f} s "
        f"(best epoch {model.best_epoch_}, whose weights are kept)."
    )
    _print_scores(
        f"Held-out interpolation ({DEMO_HIDE_FRACTION:.0%} of points hidden)",
        _score_hidden(
            model, *_split(model, test, protocol="interpolation", fraction=DEMO_HIDE_FRACTION, seed=args.seed)
        ),
    )
    context, future = _split(model, test, protocol="extrapolation", fraction=DEMO_CONTEXT_FRACTION, seed=None)
    _print_scores(
        f"Held-out extrapolation (last {1 - DEMO_CONTEXT_FRACTION:.0%} predicted)",
        _score_hidden(model, context, future),
    )
    figures = []
    for series_id in pd.unique(test["id"])[:DEMO_PLOTTED_SERIES]:
        grid = truth.loc[truth["id"] == series_id, "time"]
        figures.append(
            plot_series(model, context, series_id, times=grid, truth=truth, random_state=args.seed)
        )
    figure = Path(args.out) / DEMO_FIGURE
    _save_figures(figures, str(figure))
    print(f"Figure ({DEMO_PLOTTED_SERIES} held-out series, observed first half, truth dashed): {figure}")
    print(f"Done in {time.perf_counter() - started:.1f} s.")
    return 0


# ---------------------------------------------------------------------------------------------------------
# Entry point


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def _set_threads(threads: int | None) -> None:
    """Apply ``--threads``; without it, :data:`DEFAULT_THREADS` unless ``OMP_NUM_THREADS`` is set."""
    if threads is None and "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    torch.set_num_threads(threads or DEFAULT_THREADS)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each (``--debug`` shows them with their source location instead)."""
    print(f"{PROG}: warning: {_one_line(message)}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    """Run the ``latentode`` command line on ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # reported by the command's parser, so that the message points at its --help
            args.commands[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    except _InputError as error:
        print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except SystemExit as exit_:  # --help and --version
        return int(exit_.code or 0)
    _set_threads(args.threads)
    with warnings.catch_warnings():
        if not args.debug:
            warnings.showwarning = _show_warning
        try:
            return args.handler(args)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BrokenPipeError:  # the reader of stdout went away (| head): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_BROKEN_PIPE
        except _input_errors() as error:
            if args.debug:
                traceback.print_exc()
            print(f"{PROG}: error: {_one_line(error)}", file=sys.stderr)
            return EXIT_INPUT_ERROR
