"""The monitor model: trained on simulated Leipzig-format records and real MIT-BIH rhythm windows together.

One run (:func:`train_monitor`) builds both window sets (:func:`pedstream.train.dataset.build_windows` for
the simulated folder, :func:`pedstream.train.rhythm_data.build_rhythm_windows` for the real one), joins
them, splits them, fits the model with real noise mixed into the training batches
(:class:`~pedstream.train.rhythm_data.NoiseMixer`) and scores the held-out parts of each source apart:

* ``fold=K`` (cross-validation): the simulated records by the subject protocol (grouped K-fold fold K,
  ``split.folds`` folds, as the demo model's report) and the real records by record: the records that
  :func:`record_folds` puts in fold K are the real test set, never seen in training or validation;
* ``fold=None`` (the shipped model): every record trains except the validation subjects/records used for
  early stopping; no test set.

Early stopping looks at the macro-F1 of the validation windows of both sources together: the simulated
validation subjects and ``mix.val_records`` real training records (sinus-only records, so no rare class
loses its few records). The run folder has the files of ``pedstream train`` (checkpoint.pt for
``pedstream export``, manifest.json, curves, split) plus ``metrics_sim.json`` / ``metrics_real.json`` and
``predictions_sim.npz`` / ``predictions_real.npz`` for the test parts.

    python -m pedstream.train.monitor --config configs/monitor.toml --sim SIM --real MITDB --noise NSTDB \\
        --out RUN [--fold K --folds 3]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pedstream.train.dataset import WindowSet

__all__ = ["DATA_NAME", "TRAINED_ON", "MonitorData", "load_monitor_data", "monitor_split", "record_folds",
           "train_monitor"]

DATA_NAME = "simulated Leipzig-format data + MIT-BIH ECG"
TRAINED_ON = f"{DATA_NAME}, not for clinical use"


@dataclass
class MonitorData:
    """Both window sets and their union (``ws``: the simulated windows first, ``n_sim`` of them)."""

    ws: WindowSet
    n_sim: int
    sim: WindowSet
    real: WindowSet

    @property
    def real_idx(self) -> np.ndarray:
        return np.arange(self.n_sim, len(self.ws), dtype=np.int64)


def load_monitor_data(cfg: Any, *, sim: str | Path, real: str | Path, cache_dir: str | Path) -> MonitorData:
    from pedstream.train.dataset import build_windows
    from pedstream.train.rhythm_data import build_rhythm_windows, concat_windows

    ws_sim = build_windows(sim, cfg, cache_dir=cache_dir)
    ws_real = build_rhythm_windows(real, cfg, cache_dir=cache_dir)
    return MonitorData(ws=concat_windows([ws_sim, ws_real], cache_dir), n_sim=len(ws_sim), sim=ws_sim, real=ws_real)


def record_folds(ws: WindowSet, n_folds: int) -> dict[str, int]:
    """Record -> fold, stratified: for each class from the rarest, its records (most windows first) go to
    the fold holding fewest windows of it; records of common classes only then fill the smallest folds."""
    recs = sorted(set(ws.records.tolist()))
    counts = {r: np.bincount(ws.labels[ws.records == r], minlength=len(ws.classes)) for r in recs}
    total = np.sum([c for c in counts.values()], axis=0)
    fold_of: dict[str, int] = {}
    per_fold = np.zeros((n_folds, len(ws.classes)), dtype=np.int64)
    n_rec = np.zeros(n_folds, dtype=np.int64)
    for k in np.argsort(np.where(total > 0, total, np.iinfo(np.int64).max), kind="stable"):
        if total[k] == 0:
            continue
        for r in sorted((r for r in recs if counts[r][k] > 0 and r not in fold_of), key=lambda r: (-counts[r][k], r)):
            if total[k] > 0.2 * total.sum() and per_fold[:, k].min() > 0:  # a common class: balance record counts
                f = int(np.lexsort((per_fold[:, k], n_rec))[0])
            else:
                f = int(np.lexsort((n_rec, per_fold[:, k]))[0])
            fold_of[r] = f
            per_fold[f] += counts[r]
            n_rec[f] += 1
    return fold_of


def _val_records(ws: WindowSet, idx: np.ndarray, n: int, seed: int) -> list[str]:
    """``n`` records among ``idx`` whose windows are all sinus (seeded choice)."""
    if n <= 0 or "sinus" not in ws.classes:
        return []
    sinus = ws.classes.index("sinus")
    recs = sorted(set(ws.records[idx].tolist()))
    pure = [r for r in recs if np.all(ws.labels[idx][ws.records[idx] == r] == sinus)]
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(pure, size=min(n, len(pure)), replace=False).tolist()) if pure else []


def monitor_split(data: MonitorData, cfg: Any, *, fold: int | None, n_folds: int = 3) -> Any:
    """The :class:`~pedstream.train.splits.Split` of one run over ``data.ws`` (see the module docstring)."""
    from pedstream.train.rhythm_data import training_subset
    from pedstream.train.splits import Split, make_split

    sp = make_split(data.sim, cfg, protocol="all" if fold is None else "subject", fold=0 if fold is None else fold)
    real = data.real
    ridx = np.arange(len(real), dtype=np.int64)
    if fold is None:
        test_recs: list[str] = []
    else:
        folds = record_folds(real, n_folds)
        test_recs = sorted(r for r, f in folds.items() if f == fold)
    in_test = np.isin(real.records, test_recs)
    val_recs = _val_records(real, ridx[~in_test], cfg.mix.val_records, cfg.train.seed)
    in_val = np.isin(real.records, val_recs)
    r_train = training_subset(real, ridx[~in_test & ~in_val], cfg.mix.max_windows_per_class_record, cfg.train.seed)
    off = data.n_sim
    train = np.concatenate([sp.train, r_train + off])
    val = np.concatenate([sp.val, ridx[in_val] + off])
    test = np.concatenate([sp.test, ridx[in_test] + off])
    groups = data.ws.subjects
    subj = {name: sorted(set(groups[idx].tolist())) for name, idx in (("train", train), ("val", val), ("test", test))}
    return Split(protocol="monitor-all" if fold is None else "monitor-cv", fold=0 if fold is None else int(fold),
                 n_folds=1 if fold is None else int(n_folds), train=np.sort(train), val=np.sort(val), test=np.sort(test),
                 leaks_subjects=False, subjects=subj)


def describe(data: MonitorData, split: Any) -> tuple[str, bool, dict[str, Any]]:
    """``(description, simulated, training_data)`` for the model metadata (see :mod:`pedstream.model.metadata`)."""
    tr = split.train
    n_sim_subj = len(set(data.ws.subjects[tr[tr < data.n_sim]].tolist()))
    real_recs = sorted(set(data.ws.records[tr[tr >= data.n_sim]].tolist()))
    desc = (f"{TRAINED_ON}: {n_sim_subj} simulated Leipzig-format records (pedstream data synth) and "
            f"{len(real_recs)} MIT-BIH Arrhythmia Database records (PhysioNet mitdb, real adult ECG, 2 leads "
            f"resampled 360 -> {data.ws.fs:g} Hz, rhythm annotations mapped by [labels.rhythm]); "
            f"{tr.size} training windows of {data.ws.window / data.ws.fs:.3g} s")
    td = {"name": DATA_NAME, "trained_on": TRAINED_ON, "format": "Leipzig-format + MIT-BIH", "simulated": True,
          "real": True, "subjects": n_sim_subj + len(real_recs), "records": n_sim_subj + len(real_recs),
          "windows": int(tr.size), "parts": [
              {"name": "simulated Leipzig-format records (pedstream data synth)", "subjects": n_sim_subj,
               "windows": int((tr < data.n_sim).sum())},
              {"name": "MIT-BIH Arrhythmia Database (PhysioNet mitdb)", "records": real_recs,
               "windows": int((tr >= data.n_sim).sum())}]}
    return desc, True, td


def _score(out: Path, model: Any, data: MonitorData, idx: np.ndarray, tag: str, cfg: Any, device: Any) -> dict | None:
    from pedstream.train import rundir
    from pedstream.train.evaluate import evaluate_arrays
    from pedstream.train.predict import predict

    if idx.size == 0:
        return None
    pt = predict(model, data.ws, idx, device=device, batch_size=max(cfg.train.batch_size, 64))
    np.savez(out / f"predictions_{tag}.npz", y_true=pt["y_true"], y_pred=pt["y_pred"], probs=pt["probs"],
             record=data.ws.records[idx], start=data.ws.starts[idx], subject=data.ws.subjects[idx],
             classes=np.asarray(data.ws.classes))
    m = evaluate_arrays(pt["y_true"], pt["y_pred"], data.ws.classes, n_boot=cfg.train.bootstrap, seed=cfg.train.seed,
                        probs=pt["probs"], groups=data.ws.subjects[idx])
    rundir.write_json(out / f"metrics_{tag}.json", m)
    return m


def train_monitor(cfg: Any, *, sim: str | Path, real: str | Path, noise: str | Path, out: str | Path,
                  fold: int | None = None, n_folds: int = 3, cache_dir: str | Path | None = None,
                  console: Any = None, progress: bool = False) -> dict[str, Any]:
    """One run (see the module docstring); returns ``{"sim": metrics, "real": metrics, "best_epoch", ...}``."""
    import torch
    from rich.console import Console

    from pedstream.model.config import ModelConfig
    from pedstream.model.network import build_model
    from pedstream.train import rundir
    from pedstream.train.dataset import default_cache_dir
    from pedstream.train.fit import fit, resolve_device, seed_everything
    from pedstream.train.losses import build_loss
    from pedstream.train.rhythm_data import NoiseMixer, load_noise

    t0 = time.perf_counter()
    console = console or Console(stderr=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed, deterministic=cfg.train.deterministic)
    device = resolve_device(cfg.train.device)
    data = load_monitor_data(cfg, sim=sim, real=real, cache_dir=cache_dir or default_cache_dir(cfg))
    split = monitor_split(data, cfg, fold=fold, n_folds=n_folds)
    console.print(f"monitor {split.protocol} fold {split.fold}: {len(data.ws)} windows ({data.n_sim} simulated, "
                  f"{len(data.real)} real) · train {split.train.size} · val {split.val.size} · test {split.test.size}")
    mixer = NoiseMixer(load_noise(noise, cfg, clean_dir=real), prob=cfg.mix.noise_prob, snr_db=cfg.mix.snr_db,
                       lead_dropout=cfg.mix.lead_dropout, seed=cfg.train.seed)
    n_classes = len(data.ws.classes)
    model_cfg = ModelConfig.from_sections(cfg.model, signal=cfg.signal, segments=cfg.segments, n_classes=n_classes)
    model = build_model(model_cfg).to(device)
    loss_fn = build_loss(cfg.loss, n_classes=n_classes, class_counts=data.ws.class_counts(split.train),
                         embed_dim=model_cfg.embed_dim).to(device)
    fitted = fit(model, loss_fn, data.ws, train=split.train, val=split.val, tc=cfg.train, device=device,
                 console=console, progress=progress, augment=mixer)
    desc = describe(data, split)
    method = "monitor (" + ("AGCACL" if cfg.loss.name == "agcacl" else cfg.loss.name) + ", real noise mixed in)"
    rundir.write_checkpoint(out, model=model.cpu(), model_cfg=model_cfg, cfg=cfg, ws=data.ws, split=split,
                            fitted=fitted, method=method, description=desc)
    model.to(device)
    rundir.write_curves(fitted.history, out / "curves.csv")
    rundir.write_split(out, data.ws, split)
    manifest = rundir.build_manifest(cfg=cfg, ws=data.ws, data=Path(sim), split=split, fitted=fitted, method=method,
                                     device=device, description=desc, seconds_train=time.perf_counter() - t0)
    manifest["data"]["real_folder"] = str(Path(real).resolve())
    manifest["data"]["noise_folder"] = str(Path(noise).resolve())
    manifest["real_test_records"] = sorted(set(data.ws.records[split.test[split.test >= data.n_sim]].tolist()))
    test = split.test
    res = {"fold": fold, "best_epoch": fitted.best_epoch, "best_val_macro_f1": fitted.best_val_macro_f1,
           "epochs_run": len(fitted.history), "classes": data.ws.classes,
           "sim": _score(out, model, data, test[test < data.n_sim], "sim", cfg, device),
           "real": _score(out, model, data, test[test >= data.n_sim], "real", cfg, device),
           "real_test_records": manifest["real_test_records"], "sim_test_subjects": sorted(set(
               data.ws.subjects[test[test < data.n_sim]].tolist()))}
    manifest["seconds_total"] = round(time.perf_counter() - t0, 2)
    res["seconds"] = manifest["seconds_total"]
    rundir.write_json(out / "manifest.json", manifest)
    console.print(f"run folder {out}: best epoch {fitted.best_epoch}, {res['seconds']:.0f} s"
                  + "".join(f", {k} test macro-F1 {res[k]['macro_f1']:.3f}" for k in ("sim", "real") if res[k]))
    return res


def main(argv: list[str] | None = None) -> int:
    from pedstream.config import load_config
    from pedstream.train import rundir

    ap = argparse.ArgumentParser(prog="python -m pedstream.train.monitor", description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=None)
    ap.add_argument("--sim", required=True, help="folder of simulated Leipzig-format records (pedstream data synth)")
    ap.add_argument("--real", required=True, help="folder of rhythm-annotated MIT-BIH records")
    ap.add_argument("--noise", required=True, help="MIT-BIH Noise Stress Test folder (bw, ma, 118e00)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--fold", type=int, default=None, help="cross-validation fold; omitted = train on all")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    a = ap.parse_args(argv)
    cfg = load_config(a.config, a.sets)
    res = train_monitor(cfg, sim=a.sim, real=a.real, noise=a.noise, out=a.out, fold=a.fold, n_folds=a.folds)
    rundir.write_json(Path(a.out) / "result.json", res)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
