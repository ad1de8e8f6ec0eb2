"""Augmented Neural ODEs: concentric circles that a plain Neural ODE cannot separate and an augmented one can.

The data are 2-D points: an inner disk (class 0) surrounded by an annulus (class 1). A classifier flows each
point with a Neural ODE from t = 0 to t = 1 and reads the class off the final state with a *linear* layer.

* A plain Neural ODE flows the plane onto itself. Its flow is a homeomorphism (trajectories cannot cross),
  so the disk stays enclosed by the annulus and no line can separate them. The best a plain model can do is
  stretch space: it pulls the inner region out through a thin channel across the ring, where training
  points are sparse (visible in the figure), and misclassifies the ring points in that channel, with a training loss that plateaus far above zero and
  a harder flow (more function evaluations of the adaptive solver).
* An augmented Neural ODE (Dupont, Doucet & Teh, 2019) appends zero dimensions to the state
  (``MLPVectorField(2 + augment_dim, augment_dim=augment_dim)``). In 3-D the disk can simply be lifted
  above the annulus, after which a plane separates them: accuracy reaches 100% with a simple flow.

This example uses the library's building blocks directly rather than an estimator:
:class:`latentode.vector_fields.MLPVectorField` and :func:`latentode.solve.odesolve` with a
:class:`latentode.solve.SolverConfig`. It reports both models' test accuracy and their function evaluations
per forward pass (the plain model's field has to become complicated, so adaptive solvers take more steps).

Run::

    python examples/augmented_ode.py            # full size, about a minute
    python examples/augmented_ode.py --small    # a few seconds
"""

from __future__ import annotations

import argparse
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor, nn

from latentode.solve import SolverConfig, odesolve
from latentode.vector_fields import MLPVectorField

INNER_RADIUS = 0.5
"""Points of class 0 fill the disk of this radius."""

ANNULUS_RADII = (1.0, 1.5)
"""Points of class 1 fill the annulus between these radii."""

AUGMENT_DIM = 1
"""Extra zero dimensions of the augmented model; one is enough to lift the disk out of the plane."""

FLOW_TIME = 1.0
"""Each point flows from t = 0 to t = FLOW_TIME before the linear read-out."""

SOLVER = SolverConfig("dopri5", rtol=1e-3, atol=1e-4)
"""How the flows are integrated; adaptive, so the function evaluations measure how hard each flow is."""

N_PLOTTED = 60
"""Number of test points whose trajectories are drawn."""

N_TRAJECTORY_TIMES = 11
"""Time points along each drawn trajectory."""

GRID_RESOLUTION = 50
"""Points per axis of the grid on which the predicted class probability is drawn."""

PNG_COLOURS = 64
"""Figures are saved as palette PNGs with this many colours, which keeps them a few tens of KB."""


@dataclass(frozen=True)
class Sizes:
    """Problem and training sizes for a run."""

    n_train: int
    n_test: int
    hidden_dim: int
    n_steps: int
    learning_rate: float
    dpi: int


FULL = Sizes(n_train=1000, n_test=1000, hidden_dim=32, n_steps=200, learning_rate=1e-2, dpi=100)
SMALL = Sizes(n_train=128, n_test=128, hidden_dim=16, n_steps=80, learning_rate=1e-2, dpi=70)


def make_circles(n_points: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Points (n_points, 2) uniform over the inner disk or the annulus, half each, and labels (n_points,)."""
    labels = (np.arange(n_points) % 2).astype(np.float64)
    low = np.where(labels == 0, 0.0, ANNULUS_RADII[0])
    high = np.where(labels == 0, INNER_RADIUS, ANNULUS_RADII[1])
    radius = np.sqrt(rng.uniform(low**2, high**2))  # uniform in area
    angle = rng.uniform(0.0, 2 * np.pi, n_points)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    order = rng.permutation(n_points)
    return points[order], labels[order]


class ODEClassifier(nn.Module):
    """Flow a 2-D point (augmented by ``augment_dim`` zeros) with a Neural ODE, then a linear read-out."""

    def __init__(self, augment_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.field = MLPVectorField(2 + augment_dim, hidden_dim=hidden_dim, n_layers=2, augment_dim=augment_dim)
        self.readout = nn.Linear(2 + augment_dim, 1)

    def flow(self, points: Tensor, times: Tensor) -> Tensor:
        """States (len(times), batch, 2 + augment_dim) of ``points`` (batch, 2) flowed to ``times``."""
        return odesolve(self.field, self.field.augment(points), times, SOLVER)

    def forward(self, points: Tensor) -> Tensor:
        """Logits (batch,) of class 1."""
        final = self.flow(points, torch.tensor([0.0, FLOW_TIME]))[-1]
        return self.readout(final).squeeze(-1)


def as_tensor(array: np.ndarray) -> Tensor:
    return torch.as_tensor(array, dtype=torch.float32)


def train(model: ODEClassifier, points: Tensor, labels: Tensor, sizes: Sizes) -> list[float]:
    """Full-batch Adam on the logistic loss; returns the loss per step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=sizes.learning_rate)
    losses = []
    for _ in range(sizes.n_steps):
        loss = nn.functional.binary_cross_entropy_with_logits(model(points), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def evaluate(model: ODEClassifier, points: Tensor, labels: Tensor) -> tuple[float, float]:
    """Accuracy and function evaluations of one forward pass on ``points``."""
    model.field.reset_nfe()
    with torch.no_grad():
        predicted = (model(points) > 0).to(labels.dtype)
    return float((predicted == labels).to(torch.float64).mean()), float(model.field.nfe)


def _draw_flow(ax, model: ODEClassifier, points: Tensor, labels: np.ndarray, three_d: bool) -> None:
    times = torch.linspace(0.0, FLOW_TIME, N_TRAJECTORY_TIMES)
    with torch.no_grad():
        paths = model.flow(points, times).numpy()  # (time, batch, state)
    colours = np.where(labels == 0, "tab:blue", "tab:red")
    for k in range(paths.shape[1]):
        coords = [paths[:, k, 0], paths[:, k, 1]] + ([paths[:, k, 2]] if three_d else [])
        ax.plot(*coords, color=colours[k], lw=0.6, alpha=0.6)
        ax.scatter(*[c[-1:] for c in coords], color=colours[k], s=8)


def _draw_readout_line(ax, model: ODEClassifier) -> None:
    """The plain model's linear read-out boundary w . z + b = 0 in final-state coordinates."""
    (w1, w2), b = model.readout.weight.detach()[0].tolist(), float(model.readout.bias.detach()[0])
    x_lo, x_hi = ax.get_xlim()
    y_lo, y_hi = ax.get_ylim()
    if abs(w2) > abs(w1):
        xs = np.array([x_lo, x_hi])
        ax.plot(xs, -(w1 * xs + b) / w2, "k--", lw=1, label="read-out boundary")
    else:
        ys = np.array([y_lo, y_hi])
        ax.plot(-(w2 * ys + b) / w1, ys, "k--", lw=1, label="read-out boundary")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.legend(loc="best", fontsize=7)


def _draw_probability(ax, model: ODEClassifier, points: np.ndarray, labels: np.ndarray) -> None:
    span = ANNULUS_RADII[1] * 1.1
    axis = np.linspace(-span, span, GRID_RESOLUTION)
    gx, gy = np.meshgrid(axis, axis)
    grid = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], axis=1), dtype=torch.float32)
    with torch.no_grad():
        probability = torch.sigmoid(model(grid)).numpy().reshape(gx.shape)
    # Two flat colours (predicted class) and the 0.5 contour keep the PNG small.
    ax.contourf(gx, gy, probability, levels=[0.0, 0.5, 1.0], colors=["#c6dbef", "#fcbba1"])
    ax.contour(gx, gy, probability, levels=[0.5], colors="k", linewidths=0.8)
    ax.scatter(points[:, 0], points[:, 1], c=np.where(labels == 0, "tab:blue", "tab:red"), s=4)
    ax.set_aspect("equal")


def save_png(fig: Figure, path: Path, dpi: int) -> None:
    """Render ``fig`` and save it as a palette PNG (a README-friendly file size)."""
    from PIL import Image  # a dependency of matplotlib

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    Image.open(buffer).convert("RGB").quantize(colors=PNG_COLOURS).save(path, optimize=True)


def main(small: bool = False, out_dir: str | Path = "examples/figures", seed: int = 0) -> dict:
    """Train a plain and an augmented Neural ODE classifier on concentric circles; plot and compare them.

    Returns
    -------
    dict
        ``accuracy_plain``, ``accuracy_augmented`` (test accuracy), ``nfe_plain``, ``nfe_augmented``
        (function evaluations of one forward pass on the test set), ``final_loss_plain``,
        ``final_loss_augmented``, ``seconds``.
    """
    sizes = SMALL if small else FULL
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    train_x, train_y = make_circles(sizes.n_train, rng)
    test_x, test_y = make_circles(sizes.n_test, rng)
    metrics: dict[str, float] = {}
    models = {}
    for name, augment_dim in (("plain", 0), ("augmented", AUGMENT_DIM)):
        torch.manual_seed(seed)
        model = ODEClassifier(augment_dim, sizes.hidden_dim)
        losses = train(model, as_tensor(train_x), as_tensor(train_y), sizes)
        accuracy, nfe = evaluate(model, as_tensor(test_x), as_tensor(test_y))
        metrics[f"accuracy_{name}"] = accuracy
        metrics[f"nfe_{name}"] = nfe
        metrics[f"final_loss_{name}"] = losses[-1]
        models[name] = model

    fig = Figure(figsize=(8, 7.5))
    shown = slice(0, N_PLOTTED)
    ax = fig.add_subplot(2, 2, 1)
    _draw_flow(ax, models["plain"], as_tensor(test_x[shown]), test_y[shown], three_d=False)
    _draw_readout_line(ax, models["plain"])
    ax.set_title(f"plain Neural ODE: flow in the plane\naccuracy {metrics['accuracy_plain']:.1%}", fontsize=9)
    ax = fig.add_subplot(2, 2, 2, projection="3d")
    _draw_flow(ax, models["augmented"], as_tensor(test_x[shown]), test_y[shown], three_d=True)
    ax.set_title(f"augmented (+{AUGMENT_DIM} dim): flow in 3-D\naccuracy {metrics['accuracy_augmented']:.1%}",
                 fontsize=9)
    ax.set_zlabel("augmented dim")
    for column, name in enumerate(("plain", "augmented")):
        ax = fig.add_subplot(2, 2, 3 + column)
        _draw_probability(ax, models[name], test_x, test_y)
        ax.set_title(f"{name}: P(outer ring) over the input plane", fontsize=9)
    fig.tight_layout()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_png(fig, out / "augmented_ode.png", sizes.dpi)
    metrics["seconds"] = time.perf_counter() - started
    return metrics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny, fast run (as in the tests)")
    parser.add_argument("--out-dir", default="examples/figures", help="where to write the figure")
    args = parser.parse_args()
    for key, value in main(small=args.small, out_dir=args.out_dir).items():
        print(f"{key}: {value:.4g}")
