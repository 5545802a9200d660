"""One simulated Leipzig-format record, in memory: :func:`simulate_record` / :func:`synthesize`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from pedstream.data.annotations import Annotations
from pedstream.data.channels import ECG_CHANNELS, LEIPZIG_LAYOUTS
from pedstream.data.synth.episodes import Label, random_label_stream
from pedstream.data.synth.iegm import IegmModel, render_iegm
from pedstream.data.synth.morphology import EcgModel, render_ecg
from pedstream.data.synth.noise import NoiseSource, add_noise, find_nstdb
from pedstream.data.synth.rhythm import Schedule, schedule_labels
from pedstream.data.synth.subject import Subject, random_subject, record_name
from pedstream.errors import ChannelError, ConfigError

__all__ = ["LEIPZIG_FS", "DEFAULT_GAIN", "RecordOptions", "SimulatedRecord", "record_options",
           "synthesize", "simulate_record"]

LEIPZIG_FS = 977.0
DEFAULT_GAIN = 3200.0      # adu/mV: format 16 full scale 32767 adu = +/-10.24 mV, as on most real channels
# Random subjects cycle through diagnoses in about the real proportions (13 AVNRT, 9 AVRT, 6 WPW,
# 1 PJRT of 29), so any six consecutive records hold both mechanisms and a manifest pathway.
DIAGNOSIS_CYCLE = ("AVNRT", "AVRT-WPW", "AVRT", "AVNRT", "AVRT", "AVNRT")
_KNOWN = set(ECG_CHANNELS) | {"ABL12", "RVA12", "CS12", "CS34", "CS56", "CS78", "CS90", "ABL_uni", "ART"}


@dataclass
class RecordOptions:
    """Recording artefacts of one record.

    ``clip_leads``: ECG leads pushed into amplifier saturation by an electrode-offset drift;
    ``flat``: channels that are a flat line (a disconnected catheter, like the real x0027 ABL12);
    ``gains``: adu/mV per channel where it differs from :data:`DEFAULT_GAIN` (1600 -> +/-20.48 mV,
    640 -> +/-51.2 mV); ``noise_level``: overall noise factor.
    """

    clip_leads: tuple[str, ...] = ()
    flat: tuple[str, ...] = ()
    gains: dict[str, float] = field(default_factory=dict)
    noise_level: float = 1.0


def record_options(rng: np.random.Generator, *, index: int, channels: Sequence[str]) -> RecordOptions:
    """Draw the artefacts of record ``index``: about 1 in 5 records clips on the surface ECG, one
    record in 13 has a flat ABL12 (always the 5th, 18th...), a few have wider-range channels."""
    clip = tuple(str(x) for x in rng.choice(ECG_CHANNELS, size=int(rng.integers(1, 3)), replace=False)) \
        if rng.random() < 0.2 else ()
    flat = ("ABL12",) if index % 13 == 4 and "ABL12" in channels else ()
    gains: dict[str, float] = {}
    u = rng.random()
    if u < 0.07 and "RVA12" in channels:
        gains["RVA12"] = 640.0
    elif u < 0.12:
        gains = {c: 1600.0 for c in channels}
    return RecordOptions(clip_leads=clip, flat=flat, gains=gains, noise_level=float(rng.uniform(0.6, 1.4)))


@dataclass
class SimulatedRecord:
    """A simulated record. ``signal``: (n, n_channels) float64 mV, already clipped to each channel's
    ADC range; ``gains``: (n_channels,) adu/mV; ``annotations`` at ``fs``; ``schedule``: the events."""

    name: str
    layout: str
    fs: float
    signal: np.ndarray
    channels: tuple[str, ...]
    gains: np.ndarray
    annotations: Annotations
    subject: Subject
    options: RecordOptions
    schedule: Schedule

    @property
    def duration_s(self) -> float:
        return self.signal.shape[0] / self.fs


def _layout_channels(layout: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(layout, str):
        if layout not in LEIPZIG_LAYOUTS:
            raise ConfigError([("layout", f"unknown layout {layout!r}; expected one of {sorted(LEIPZIG_LAYOUTS)}")],
                              source="synth")
        return layout, *LEIPZIG_LAYOUTS[layout]
    chans = tuple(layout)
    bad = [c for c in chans if c not in _KNOWN]
    if bad:
        raise ChannelError("synth", f"cannot simulate channels {bad}; known: {sorted(_KNOWN)}", channels=bad)
    return "custom", *chans


def synthesize(*, name: str | None = None, layout: str | Sequence[str] = "full", minutes: float, seed: int,
               index: int = 0, fs: float = LEIPZIG_FS, subject: Subject | None = None,
               labels: Iterable[Label] | None = None, mains_hz: float = 50.0,
               nstdb: str | os.PathLike[str] | None = "auto", options: RecordOptions | None = None) -> SimulatedRecord:
    """Simulate one record of ``minutes`` at ``fs`` Hz, deterministic in ``(seed, index)``.

    ``labels``: the ``(symbol, aux)`` stream to follow (looped if it runs out; default: the random
    real-prior episode generator); ``subject``: default drawn from the seed; ``nstdb``: ``"auto"``
    (find the real bw/ma noise records), a folder, or ``None`` (synthetic noise only).
    """
    if minutes <= 0:
        raise ConfigError([("minutes", f"must be > 0 (got {minutes})")], source="synth")
    layout_name, *chans = _layout_channels(layout)
    ss = np.random.SeedSequence([int(seed), int(index)])
    r_subj, r_sched, r_render, r_noise, r_opt = (np.random.default_rng(s) for s in ss.spawn(5))
    name = name or record_name(index)
    if subject is None:
        diagnosis = DIAGNOSIS_CYCLE[index % len(DIAGNOSIS_CYCLE)]
        if diagnosis == "AVRT" and r_subj.random() < 0.1:
            diagnosis = "AVRT-PJRT"
        subject = random_subject(r_subj, index=index, diagnosis=diagnosis)
    duration = float(minutes) * 60.0
    n = int(round(duration * fs))
    if labels is None:
        stream = random_label_stream(subject, r_sched, max_episode_beats=max(20, int(minutes * 30)))
    else:
        seq = list(labels) if not hasattr(labels, "__next__") else None
        if seq is not None:
            if not seq:
                raise ConfigError([("labels", "the label sequence is empty")], source="synth")

            def _loop(s=seq):
                while True:
                    yield from s
            stream = _loop()
        else:
            stream = labels
    sched = schedule_labels(stream, subject=subject, rng=r_sched, duration=duration)
    opts = options if options is not None else record_options(r_opt, index=index, channels=chans)

    ecg_model = EcgModel(subject=subject, fs=fs, seed=int(r_render.integers(2**31)))
    iegm_model = IegmModel(subject=subject, fs=fs, seed=int(r_render.integers(2**31)))
    ecg = render_ecg(sched, ecg_model, n, r_render)
    extras = tuple(c for c in chans if c in ("ABL_uni", "ART"))
    iegm = render_iegm(sched, iegm_model, n, ecg=ecg, rng=r_render, extras=extras)

    iegm_names = [c for c in chans if c not in ECG_CHANNELS]
    iegm_mat = np.stack([iegm[c] for c in iegm_names], axis=1) if iegm_names else np.zeros((n, 0))
    art_clean = iegm_mat[:, iegm_names.index("ART")].copy() if "ART" in iegm_names else None
    nstdb_dir = find_nstdb(None) if nstdb == "auto" else (find_nstdb(nstdb) if nstdb is not None else None)
    src = NoiseSource(fs=fs, rng=r_noise, nstdb=nstdb_dir)
    artefacts = [b.t for b in sched.beats if b.artefact]
    add_noise(ecg, iegm_mat, src=src, mains_hz=mains_hz, noise_spans=sched.noise_spans,
              artefacts=artefacts, level=opts.noise_level)
    if art_clean is not None:  # a pressure line carries no electrical noise to speak of
        k = iegm_names.index("ART")
        iegm_mat[:, k] = art_clean + r_noise.normal(0, 0.005, n)

    t = np.arange(n) / fs
    for lead in opts.clip_leads:  # electrode-offset drift that drives the amplifier into saturation
        k = ECG_CHANNELS.index(lead)
        f = r_noise.uniform(0.005, 0.02)
        ecg[:, k] += r_noise.choice([-1, 1]) * 12.0 * np.clip(np.sin(2 * np.pi * f * t + r_noise.uniform(0, 6.3)), 0, None) ** 2

    cols = {c: ecg[:, i] for i, c in enumerate(ECG_CHANNELS)}
    cols.update({c: iegm_mat[:, i] for i, c in enumerate(iegm_names)})
    signal = np.stack([cols[c] for c in chans], axis=1)  # (n, n_channels) mV
    gains = np.array([opts.gains.get(c, DEFAULT_GAIN) for c in chans], dtype=float)
    for c in opts.flat:
        if c in chans:
            signal[:, chans.index(c)] = 0.0
    lim = 32767.0 / gains
    np.clip(signal, -lim, lim, out=signal)

    samples = np.array([int(round(x[0] * fs)) for x in sched.annotations], dtype=np.int64)
    if samples.size > 1:  # strictly increasing sample positions
        samples = np.maximum.accumulate(samples - np.arange(samples.size)) + np.arange(samples.size)
    keep = samples < n
    ann = Annotations(sample=samples[keep], symbol=[x[1] for x, k in zip(sched.annotations, keep) if k],
                      aux=[x[2] for x, k in zip(sched.annotations, keep) if k], fs=fs, record=name)
    return SimulatedRecord(name=name, layout=layout_name, fs=fs, signal=signal, channels=tuple(chans),
                           gains=gains, annotations=ann, subject=subject, options=opts, schedule=sched)


def simulate_record(*, name: str | None = None, layout: str | Sequence[str] = "full", minutes: float, seed: int,
                    fs: float = LEIPZIG_FS, subject: Subject | None = None,
                    labels: Iterable[Label] | None = None, **kwargs) -> tuple[np.ndarray, tuple[str, ...], Annotations]:
    """In-process simulation without files: ``(signal (n, n_ch) float64 mV, channel names, Annotations)``.

    Same arguments as :func:`synthesize` (``index``, ``mains_hz``, ``nstdb``, ``options`` as keywords).
    """
    rec = synthesize(name=name, layout=layout, minutes=minutes, seed=seed, fs=fs, subject=subject,
                     labels=labels, **kwargs)
    return rec.signal, rec.channels, rec.annotations
