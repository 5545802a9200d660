"""Training and evaluation (``pedstream train`` / ``eval`` / ``compare``).

Torch-free at import time: names are resolved lazily on first access (``__getattr__``), so
``import pedstream.train`` (and the torch-free ``metrics`` / ``splits``) never pulls in torch.
"""

from __future__ import annotations

from pedstream._lazy import lazy_exports

# public name -> defining module (add yours here; keep values torch-free to import lazily)
_LAZY: dict[str, str] = {
    # losses (imports torch)
    "LOSS_NAMES": "pedstream.train.losses",
    "LossModule": "pedstream.train.losses",
    "build_loss": "pedstream.train.losses",
    # metrics (numpy + scikit-learn)
    "HEADLINE_METRICS": "pedstream.train.metrics",
    "evaluate_predictions": "pedstream.train.metrics",
    "plot_confusion": "pedstream.train.metrics",
    # window dataset, training loop, evaluation, comparison (import torch, except compare/evaluate helpers)
    "WindowSet": "pedstream.train.dataset",
    "WindowDataset": "pedstream.train.dataset",
    "build_windows": "pedstream.train.dataset",
    "make_loader": "pedstream.train.dataset",
    "train_run": "pedstream.train.loop",
    "TrainResult": "pedstream.train.loop",
    "SubjectLeakageWarning": "pedstream.train.splits",
    "Split": "pedstream.train.splits",
    "make_split": "pedstream.train.splits",
    "fit": "pedstream.train.fit",
    "FitResult": "pedstream.train.fit",
    "predict": "pedstream.train.predict",
    "model_inputs": "pedstream.train.predict",
    "evaluate_run": "pedstream.train.evaluate",
    "evaluate_arrays": "pedstream.train.evaluate",
    "compare_runs": "pedstream.train.compare",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
