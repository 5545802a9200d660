"""What the dashboard, the strips and ``pedstream run`` say about the model: :func:`model_banner`
(what it was trained on, from its metadata), :func:`is_packaged_model`, :func:`hr_limits_text`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pedstream.config import Config
from pedstream.model.metadata import trained_on
from pedstream.monitor.alarms import hr_limits_for_age

__all__ = ["PACKAGED_MODELS", "hr_limits_text", "is_packaged_model", "model_banner"]


def _training_data(meta: dict[str, Any]) -> tuple[str | None, int | None, str]:
    """``(data format, number of subjects, description)`` of the model's training data.

    Models exported since the ``training_data`` metadata field exist carry the first two as fields;
    for older ones they are read from ``data_description`` ("... N subjects ...", "Leipzig-format").
    """
    desc = " ".join(str(meta.get("data_description", "")).split())
    td = meta.get("training_data")
    if isinstance(td, dict):
        fmt = td.get("format")
        n = td.get("subjects")
        return (str(fmt) if fmt else None, int(n) if isinstance(n, (int, float)) else None, desc)
    m = re.search(r"(\d+)\s+(?:simulated\s+)?subjects", desc, flags=re.IGNORECASE)
    fmt = "Leipzig-format" if re.search(r"leipzig-format", desc, flags=re.IGNORECASE) else None
    return fmt, int(m.group(1)) if m else None, desc


PACKAGED_MODELS = ("monitor_model.onnx", "demo_model.onnx")  # the models shipped in pedstream/assets/


def is_packaged_model(path: str | Path | None) -> bool:
    """Whether ``path`` is a model shipped inside pedstream (``pedstream/assets/``: the monitor model, the
    default, and the older demo model trained on simulated data only); a copy elsewhere is not."""
    if path is None:
        return False
    from importlib import resources

    assets = Path(str(resources.files("pedstream") / "assets"))
    try:
        return any(Path(path).resolve() == (assets / name).resolve() for name in PACKAGED_MODELS)
    except OSError:
        return False


def model_banner(meta: dict[str, Any], *, packaged: bool = False) -> str:
    """One short line stating what the model was trained on, from its metadata.

    Only the packaged demo model (``packaged``, see :func:`is_packaged_model`) trained on simulated
    data is a ``DEMO MODEL · trained on SIMULATED Leipzig-format data (29 simulated subjects) · not for
    clinical use``. Another model trained on simulated data (a user's first run): ``Model · trained on
    SIMULATED Leipzig-format data (3 simulated subjects) · not for clinical use``. Real data: ``Model ·
    trained on <training_data.name, else the format> (29 subjects) · research use only, not a medical
    device`` (the description itself when it names neither and is short). A model trained on several
    sources says so in its own words (``training_data.trained_on``, e.g. the monitor model: ``DEMO MODEL ·
    trained on simulated Leipzig-format data + MIT-BIH ECG, not for clinical use``).
    """
    fmt, n_subj, desc = _training_data(meta)
    td = meta.get("training_data")
    if trained_on(meta):
        return f"{'DEMO MODEL' if packaged else 'Model'} · trained on {trained_on(meta)}"
    name = " ".join(str(td.get("name") or "").split()) if isinstance(td, dict) else ""
    if meta.get("trained_on_simulated_data", False):
        what = f"SIMULATED {fmt} data" if fmt else "SIMULATED data"
        if n_subj is not None:
            what += f" ({n_subj} simulated subject{'s' if n_subj != 1 else ''})"
        return f"{'DEMO MODEL' if packaged else 'Model'} · trained on {what} · not for clinical use"
    if name:
        what = name if len(name) <= 70 else name[:69].rstrip() + "…"
    elif fmt:
        what = f"{fmt} data" + (f" ({n_subj} subject{'s' if n_subj != 1 else ''})" if n_subj is not None else "")
    elif desc:
        what = desc if len(desc) <= 60 else desc[:59].rstrip() + "…"
    else:
        what = "unknown data"
    return f"Model · trained on {what} · research use only, not a medical device"


def hr_limits_text(age_years: float | None, cfg: Config) -> str:
    lo, hi, band = hr_limits_for_age(age_years, cfg.alarms)
    return f"{band}: {lo:g}-{hi:g} bpm"
