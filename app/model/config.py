"""Model hyper-parameters.

A single frozen dataclass, built once at the edge (for example from Flower's
``context.run_config``) and passed to the pure training code.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["WIDE_SCALE", "ModelConfig"]

logger = logging.getLogger(__name__)

WIDE_SCALE = 10.0
"""Learning-rate multiplier of the linear path of ``wide-deep`` (see :mod:`app.model.wide_deep`;
here so that the NumPy scorer needs no JAX import)."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Hyper-parameters of the model and its local training.

    Parameters
    ----------
    n_features : int
        Width of the feature rows.
    hidden : tuple of int
        Hidden layer sizes of the MLP (Linear + ReLU each; the head is a Linear to one
        logit); passed to other modules that take ``hidden``.
    module : str
        Which Flax NNX module: ``"mlp"`` (built in) or a reference to a user's class
        (``"package.module:Class"``, ``"/path/file.py:Class"``; see :mod:`app.model.modules`).
    seed : int
        Seed for parameter initialisation and minibatch shuffling.
    learning_rate : float
        AdamW learning rate.
    batch_size : int
        Minibatch size (the last partial batch is padded with zero-weight rows).
    epochs : int
        Local epochs per ``train`` call (when ``steps`` is 0).
    steps : int
        Local budget in optimizer steps per ``train`` call: as many whole epochs as reach
        it (at least one, at most ``max_epochs``); 0 = use ``epochs``. A budget in steps
        trains a small batch as much as a large one, where "one epoch of whatever
        arrived" gave a 2,000-row round 8 steps.
    max_epochs : int
        Cap on the epochs a step budget may take (over-fitting of tiny batches).
    pos_weight : float
        Weight of positive examples in the binary cross-entropy (class imbalance).
    weight_decay : float
        AdamW decoupled weight decay.
    proximal_mu : float
        FedProx coefficient: adds ``mu / 2 * ||w - w_global||^2`` to the loss.
    input_clip : float
        Standardised inputs are clipped to ``[-input_clip, input_clip]`` (0 = off): a raw
        reading 80 standard deviations out (sensor glitches, one huge amount) would
        otherwise drive the ReLU layers and the linear path far outside what training
        saw. Scoring applies the same clip (it travels in the model frame's config).
    prior_shift : bool
        Logit adjustment for the class mix of a round's training rows: when the replay
        buffer over-represents positives, training adds ``logit(train rate) -
        logit(stream rate)`` to the logits, so the model's own logit keeps the stream's
        base rate (see :func:`app.fl.rounds.prequential_round`).
    """

    n_features: int
    hidden: tuple[int, ...] = (64, 32)
    module: str = "mlp"
    seed: int = 0
    learning_rate: float = 1e-3
    batch_size: int = 256
    epochs: int = 1
    steps: int = 0
    max_epochs: int = 20
    pos_weight: float = 1.0
    weight_decay: float = 0.0
    proximal_mu: float = 0.0
    input_clip: float = 0.0
    prior_shift: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {self.n_features}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {self.hidden}")
        if not self.module.strip():
            raise ValueError("module must name a model (e.g. 'mlp')")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if self.steps < 0 or self.max_epochs < 1:
            raise ValueError(
                f"need steps >= 0 and max_epochs >= 1, got {self.steps}, {self.max_epochs}"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.pos_weight <= 0:
            raise ValueError(f"pos_weight must be > 0, got {self.pos_weight}")
        if self.weight_decay < 0 or self.proximal_mu < 0:
            raise ValueError("weight_decay and proximal_mu must be >= 0")
        if not self.input_clip >= 0:  # also refuses NaN
            raise ValueError(f"input_clip must be >= 0, got {self.input_clip}")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        """All layer widths of the MLP from input to the single logit."""
        return (self.n_features, *self.hidden, 1)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-friendly dict (``hidden`` as a list)."""
        out = dataclasses.asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Build from a mapping; unknown keys are ignored, missing ones take defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if "hidden" in kwargs:
            kwargs["hidden"] = tuple(int(h) for h in kwargs["hidden"])
        return cls(**kwargs)
