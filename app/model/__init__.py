"""Pure JAX/Flax model package for fedstream.

Submodules (import them directly; this package does not import JAX eagerly so that
numpy-only users such as the metrics or frame codecs stay cheap to import):

- :mod:`app.model.config`         -- :class:`ModelConfig` hyper-parameters
- :mod:`app.model.mlp`            -- the Flax NNX MLP (one logit), the default model
- :mod:`app.model.modules`        -- which module a model is: the signature, references
- :mod:`app.model.params`         -- model <-> ``list[np.ndarray]`` in a stable order
- :mod:`app.model.standardize`    -- federated feature standardisation (mergeable moments)
- :mod:`app.model.training`       -- ``train`` / ``predict``
- :mod:`app.model.metrics`        -- mergeable score histograms (ROC AUC, PR AUC, log loss)
- :mod:`app.model.frame`          -- binary model frame for ``fl.model.global``
- :mod:`app.model.scoring`        -- score rows of a frame (NumPy MLP, JAX otherwise)
- :mod:`app.model.explain`        -- gradient x input explanations
- :mod:`app.model.bench_reference` -- plain JAX loop used as a throughput reference

No module in this package imports flwr, faust or confluent_kafka.
"""

import logging

__all__: list[str] = []

logger = logging.getLogger(__name__)

# Every JAX import in fedstream goes through this package. Without a TPU, JAX logs
# "Unable to initialize backend 'tpu': ... libtpu.so" at INFO when it picks a backend: the
# ServerApp, every ClientApp, the silo runtimes and the demo log at INFO, so they all printed
# it. Quiet that logger unless someone set its level on purpose (`--log-level debug`).
_backend_probe = logging.getLogger("jax._src.xla_bridge")
if _backend_probe.level == logging.NOTSET:
    _backend_probe.setLevel(logging.WARNING)
