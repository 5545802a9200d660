"""Causal, stateful denoising filter bank shared by training and serving.

Two bands, each a cascade of second-order sections built with :mod:`scipy.signal`:

* ECG channels (the first ``n_ecg``): Butterworth high-pass ``ecg_highpass_hz`` (baseline wander;
  0 disables), mains notch ``mains_hz`` (and its harmonics up to ``mains_harmonics`` that lie below
  Nyquist; 0 disables), Butterworth low-pass ``ecg_lowpass_hz``.
* IEGM channels (the next ``n_iegm``): the same structure with ``iegm_highpass_hz`` /
  ``iegm_lowpass_hz``.

State is explicit: ``FilterBank.sos[band]`` holds the (n_sections, 6) coefficients and
``FilterBank.zi[band]`` the (n_sections, 2, n_channels_in_band) delay-line state, carried between
calls so that feeding a signal in chunks of any size gives the same output as feeding it whole.

Initial state (a documented choice): the delay lines are primed on the very first sample to the
steady state the cascade would have reached had the input been constant at that sample's value
(``scipy.signal.sosfilt_zi`` scaled per channel by the first sample). A DC electrode offset then
produces no start-up step; the first sample is a property of the stream, not of the chunking, so
chunk invariance stays exact. Everything before ``settle_samples`` is still marked as warm-up
(the high-pass needs a few time constants to forget the first sample's noise and any drift).

Cut-offs follow the sampling rate: a low-pass cut-off at or above ``LOWPASS_MAX_FRACTION * fs``
(0.45 fs, a margin below the Nyquist limit fs/2 where a Butterworth design is still well conditioned) is
clipped to it with one :class:`FilterCutoffWarning` per bank naming the setting and both values, so a
360 Hz MIT-BIH record works with the 977 Hz defaults (``iegm_lowpass_hz`` 250 Hz -> 162 Hz). A
high-pass cut-off at or above that limit cannot be clipped meaningfully and raises :class:`ConfigError`.
``FilterBank.cutoffs`` holds the cut-offs actually used, ``FilterBank.clipped`` what was clipped.

All arithmetic is float64; ``process`` returns float32.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
from scipy import signal as sps

from pedstream.config import FilterConfig
from pedstream.dsp.checks import all_finite
from pedstream.errors import ConfigError, StreamError

__all__ = ["FilterBank", "FilterCutoffWarning", "LOWPASS_MAX_FRACTION", "filter_signal", "design_band",
           "effective_cutoffs"]

LOWPASS_MAX_FRACTION = 0.45  # low-pass cut-offs are clipped to this fraction of fs (Nyquist is 0.5)


class FilterCutoffWarning(UserWarning):
    """A configured low-pass cut-off was too close to (or above) Nyquist for this rate and was clipped."""


def effective_cutoffs(cfg: FilterConfig, fs: float, bands: tuple[str, ...] = ("ecg", "iegm"),
                      ) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
    """``(cutoffs, clipped)`` for ``bands`` at ``fs``: band -> (high-pass, low-pass) Hz actually used,
    and ``filters.<band>_lowpass_hz`` -> (configured, clipped) for each low-pass clipped to
    ``LOWPASS_MAX_FRACTION * fs``. A high-pass at or above that limit raises :class:`ConfigError`."""
    limit = LOWPASS_MAX_FRACTION * fs
    cutoffs: dict[str, tuple[float, float]] = {}
    clipped: dict[str, tuple[float, float]] = {}
    problems: list[tuple[str, str]] = []
    for band in bands:
        hp, lp = float(getattr(cfg, f"{band}_highpass_hz")), float(getattr(cfg, f"{band}_lowpass_hz"))
        if hp >= limit:
            problems.append((f"filters.{band}_highpass_hz", f"{hp:g} Hz must be below {limit:g} Hz "
                             f"({LOWPASS_MAX_FRACTION:g} x fs, under the Nyquist limit {fs / 2:g} Hz at fs={fs:g} Hz)"))
        if lp >= limit:
            clipped[f"filters.{band}_lowpass_hz"] = (lp, limit)
            lp = limit
        cutoffs[band] = (hp, lp)
    if problems:
        raise ConfigError(problems, source="filters")
    return cutoffs, clipped


def design_band(
    *,
    fs: float,
    highpass_hz: float,
    lowpass_hz: float,
    mains_hz: float,
    notch_q: float,
    order: int,
    mains_harmonics: int = 1,
    key_prefix: str = "filters.",
    band: str = "ecg",
) -> np.ndarray:
    """Second-order sections (n_sections, 6) for one band: high-pass, notch(es), low-pass.

    ``fs`` and all cut-offs are in Hz. Impossible bands raise :class:`ConfigError` naming the key.
    """
    nyq = fs / 2.0
    problems: list[tuple[str, str]] = []
    if lowpass_hz >= nyq:
        problems.append(
            (f"{key_prefix}{band}_lowpass_hz", f"{lowpass_hz:g} Hz must be below Nyquist ({nyq:g} Hz at fs={fs:g} Hz)")
        )
    if highpass_hz >= nyq:
        problems.append(
            (f"{key_prefix}{band}_highpass_hz", f"{highpass_hz:g} Hz must be below Nyquist ({nyq:g} Hz at fs={fs:g} Hz)")
        )
    if highpass_hz >= lowpass_hz:
        problems.append((f"{key_prefix}{band}_highpass_hz", f"{highpass_hz:g} Hz must be below {band}_lowpass_hz ({lowpass_hz:g} Hz)"))
    if mains_hz >= nyq:
        problems.append((f"{key_prefix}mains_hz", f"{mains_hz:g} Hz must be below Nyquist ({nyq:g} Hz at fs={fs:g} Hz), or 0 to disable"))
    if problems:
        raise ConfigError(problems, source="filters")

    sections: list[np.ndarray] = []
    if highpass_hz > 0:
        sections.append(sps.butter(order, highpass_hz, btype="highpass", fs=fs, output="sos"))
    if mains_hz > 0:
        k = 1
        while k <= mains_harmonics and k * mains_hz < nyq * 0.98:
            b, a = sps.iirnotch(k * mains_hz, notch_q, fs=fs)
            sections.append(sps.tf2sos(b, a))
            k += 1
    sections.append(sps.butter(order, lowpass_hz, btype="lowpass", fs=fs, output="sos"))
    return np.concatenate(sections, axis=0).astype(np.float64)


@functools.lru_cache(maxsize=64)
def _design_cached(highpass_hz: float, lowpass_hz: float, band: str, common: tuple) -> tuple[np.ndarray, np.ndarray]:
    """:func:`design_band` and its ``sosfilt_zi``, computed once per distinct argument set and shared
    by every bank of that design (never written to: scipy's sosfilt needs them writeable, though)."""
    sos = design_band(highpass_hz=highpass_hz, lowpass_hz=lowpass_hz, band=band, **dict(common))
    return sos, sps.sosfilt_zi(sos)


class FilterBank:
    """Stateful causal filter bank for (n, n_ecg + n_iegm) multichannel signals.

    ``fs`` in Hz; ``cfg`` the ``[filters]`` section. ``process(x)`` takes (n, n_ecg + n_iegm) samples
    in mV (any float dtype) and returns (n, n_ecg + n_iegm) float32. Non-finite samples are rejected
    (a NaN would poison the IIR state forever); ``name`` is used in error messages.
    """

    def __init__(self, *, fs: float, cfg: FilterConfig, n_ecg: int = 12, n_iegm: int = 7, name: str = "filter bank") -> None:
        if not np.isfinite(fs) or fs <= 0:
            raise ConfigError([("signal.fs", f"sampling rate must be a positive number of Hz (got {fs!r})")], source="filters")
        if n_ecg < 0 or n_iegm < 0 or n_ecg + n_iegm == 0:
            raise ConfigError([("channels", f"need at least one channel (n_ecg={n_ecg}, n_iegm={n_iegm})")], source="filters")
        self.fs = float(fs)
        self.cfg = cfg
        self.n_ecg = int(n_ecg)
        self.n_iegm = int(n_iegm)
        self.name = name
        harmonics = int(cfg.mains_harmonics)
        common = dict(fs=self.fs, mains_hz=cfg.mains_hz, notch_q=cfg.notch_q, order=cfg.order, mains_harmonics=harmonics)
        # band name -> channel slice; cut-offs clipped to the rate (one warning per bank)
        self._slices: dict[str, slice] = {}
        if self.n_ecg:
            self._slices["ecg"] = slice(0, self.n_ecg)
        if self.n_iegm:
            self._slices["iegm"] = slice(self.n_ecg, self.n_ecg + self.n_iegm)
        self.cutoffs, self.clipped = effective_cutoffs(cfg, self.fs, tuple(self._slices))
        if self.clipped:
            what = "; ".join(f"{key} = {old:g} Hz clipped to {new:g} Hz" for key, (old, new) in self.clipped.items())
            warnings.warn(f"{name} at fs={self.fs:g} Hz: {what} ({LOWPASS_MAX_FRACTION:g} x fs, below Nyquist "
                          f"{self.fs / 2:g} Hz)", FilterCutoffWarning, stacklevel=2)
        # band name -> sos (n_sections, 6), and the unit-step steady state (n_sections, 2) scaled by the
        # first sample on priming; designed once per distinct setting (a ward of streams shares them)
        designs = {band: _design_cached(hp, lp, band, tuple(sorted(common.items())))
                   for band, (hp, lp) in self.cutoffs.items()}
        self.sos: dict[str, np.ndarray] = {band: sos for band, (sos, _) in designs.items()}
        self._zi_unit = {band: zi for band, (_, zi) in designs.items()}
        self.settle_samples = int(round(cfg.settle_s * self.fs))
        self.reset()

    @property
    def n_channels(self) -> int:
        return self.n_ecg + self.n_iegm

    @property
    def in_warmup(self) -> bool:
        """True while fewer than ``settle_samples`` samples have gone through the bank."""
        return self.samples_seen < self.settle_samples

    def reset(self) -> None:
        """Forget all state (delay lines zeroed, sample counter 0; the next sample primes again)."""
        # zi[band]: (n_sections, 2, n_channels_in_band) float64
        self.zi: dict[str, np.ndarray] = {
            band: np.zeros((sos.shape[0], 2, sl.stop - sl.start)) for (band, sl), sos in zip(self._slices.items(), self.sos.values())
        }
        self.samples_seen = 0

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise StreamError(self.name, f"expected samples shaped (n, {self.n_channels}), got {x.shape}")
        x64 = x.astype(np.float64, copy=False)
        if not all_finite(x64):
            bad = np.flatnonzero(~np.isfinite(x64).all(axis=0)).tolist()
            raise StreamError(self.name, f"non-finite samples in channel(s) {bad}; replace or mask them before filtering")
        return x64

    def process(self, x: np.ndarray) -> np.ndarray:
        """Filter the next chunk. x: (n, n_channels) -> (n, n_channels) float32."""
        x64 = self._check(x)  # (n, C) float64
        n = x64.shape[0]
        out = np.empty((n, self.n_channels), dtype=np.float32)
        if n == 0:
            return out
        first = self.samples_seen == 0
        for band, sl in self._slices.items():
            xb = x64[:, sl]  # (n, c_band)
            if first:
                # (n_sections, 2, 1) * (1, 1, c_band): steady state for a constant input = first sample
                self.zi[band] = self._zi_unit[band][:, :, None] * xb[0][None, None, :]
            yb, self.zi[band] = sps.sosfilt(self.sos[band], xb, axis=0, zi=self.zi[band])
            out[:, sl] = yb
        self.samples_seen += n
        return out

    def __repr__(self) -> str:
        return f"FilterBank(fs={self.fs:g}, n_ecg={self.n_ecg}, n_iegm={self.n_iegm}, sections={ {b: s.shape[0] for b, s in self.sos.items()} })"


def filter_signal(x: np.ndarray, fs: float, cfg: FilterConfig, *, n_ecg: int = 12, n_iegm: int = 7) -> np.ndarray:
    """Offline helper: a fresh :class:`FilterBank` fed the whole (n, n_ecg + n_iegm) array -> float32."""
    return FilterBank(fs=fs, cfg=cfg, n_ecg=n_ecg, n_iegm=n_iegm).process(x)
