"""The configuration sections of the offline side: signal layout, filters, labels, segments, splits,
the simulator, the model, training, mixing and the loss (``[signal]`` .. ``[loss]`` of ``config.toml``).
Part of :mod:`pedstream.config`, which assembles them into :class:`~pedstream.config.Config`; import
them from there."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ['FilterConfig', 'LabelScheme', 'LabelsConfig', 'LossName', 'LossSection', 'MixSection', 'ModelSection', 'RhythmMap', 'Section', 'SegmentConfig', 'SignalConfig', 'SplitConfig', 'SynthConfig', 'TrainSection']


class Section(BaseModel):
    """A configuration section: unknown keys rejected, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SignalConfig(Section):
    fs: float = Field(977.0, gt=0)
    ecg: list[str] = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    iegm: list[str] = ["ABL12", "RVA12", "CS12", "CS34", "CS56", "CS78", "CS90"]
    aliases: dict[str, str] = {}
    extra_ok: list[str] = []
    required: list[str] = []  # leads (canonical names) a record must have; one without them is refused
    flat_ptp_mv: float = Field(0.005, ge=0)
    clip_fraction: float = Field(0.999, gt=0, le=1)

    @property
    def channels(self) -> list[str]:
        return [*self.ecg, *self.iegm]

    @model_validator(mode="after")
    def _check(self) -> "SignalConfig":
        names = self.channels
        if len(set(names)) != len(names):
            raise ValueError("ecg and iegm channel names must be unique")
        unknown = [c for c in self.required if c not in names]
        if unknown:
            raise ValueError(f"required names {unknown}, which are not ecg or iegm channels")
        for alias, target in self.aliases.items():
            if target not in names:
                raise ValueError(f"alias {alias!r} points to {target!r}, which is not an ecg or iegm channel")
        return self


class FilterConfig(Section):
    mains_hz: float = Field(50.0, ge=0)  # 0 disables the notch
    notch_q: float = Field(30.0, gt=0)
    mains_harmonics: int = Field(1, ge=1, le=8)  # notch mains_hz x 1..k (those below Nyquist)
    ecg_highpass_hz: float = Field(0.5, ge=0)
    ecg_lowpass_hz: float = Field(40.0, gt=0)
    iegm_highpass_hz: float = Field(30.0, ge=0)
    iegm_lowpass_hz: float = Field(250.0, gt=0)
    order: int = Field(2, ge=1, le=8)
    settle_s: float = Field(2.0, ge=0)

    @model_validator(mode="after")
    def _bands(self) -> "FilterConfig":
        if self.ecg_highpass_hz >= self.ecg_lowpass_hz:
            raise ValueError("ecg_highpass_hz must be below ecg_lowpass_hz")
        if self.iegm_highpass_hz >= self.iegm_lowpass_hz:
            raise ValueError("iegm_highpass_hz must be below iegm_lowpass_hz")
        return self


class LabelScheme(Section):
    classes: dict[str, list[str]]
    ignore: list[str] = []
    unmatched: Literal["other", "ignore"] = "ignore"
    # rhythm segments with mixed = "priority": a window holding beats of several classes takes the
    # first of these classes it contains (ectopy inside a rhythm), else it is dropped.
    window_priority: list[str] = []

    @field_validator("classes")
    @classmethod
    def _non_empty(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        if len(v) < 2:
            raise ValueError("a label scheme needs at least two classes")
        return v

    @model_validator(mode="after")
    def _other(self) -> "LabelScheme":
        if self.unmatched == "other" and "other" not in self.classes:
            raise ValueError("unmatched = 'other' needs a class named 'other'")
        unknown = [c for c in self.window_priority if c not in self.classes]
        if unknown:
            raise ValueError(f"window_priority names {unknown}, which are not classes of this scheme")
        return self


class RhythmMap(Section):
    """Rhythm annotations (``+`` with aux ``"(AFIB"``...) -> classes of the label scheme ``scheme``
    (pedstream.data.rhythm). An aux string listed nowhere, or under ``ignore``, has no class: its
    episodes are excluded (from training windows and from episode scoring)."""

    scheme: str = "leipzig"  # the label scheme whose classes these are
    classes: dict[str, list[str]]
    ignore: list[str] = []


class LabelsConfig(Section):
    scheme: str = "leipzig"
    schemes: dict[str, LabelScheme] = {}
    rhythm: dict[str, RhythmMap] = {}

    @model_validator(mode="after")
    def _known(self) -> "LabelsConfig":
        if self.scheme not in self.schemes:
            raise ValueError(f"scheme {self.scheme!r} is not one of {sorted(self.schemes)}")
        for name, rmap in self.rhythm.items():
            if rmap.scheme not in self.schemes:
                raise ValueError(f"rhythm.{name}.scheme {rmap.scheme!r} is not one of {sorted(self.schemes)}")
            unknown = sorted(set(rmap.classes) - set(self.schemes[rmap.scheme].classes))
            if unknown:
                raise ValueError(f"rhythm.{name} names {unknown}, which are not classes of scheme {rmap.scheme!r}")
            seen: dict[str, str] = {}
            for cname, auxes in [*rmap.classes.items(), ("ignore", rmap.ignore)]:
                for aux in auxes:
                    if aux in seen and seen[aux] != cname:
                        raise ValueError(f"rhythm.{name}: {aux!r} is listed under {seen[aux]!r} and {cname!r}")
                    seen[aux] = cname
        return self

    @property
    def active(self) -> LabelScheme:
        return self.schemes[self.scheme]


class SegmentConfig(Section):
    mode: Literal["rhythm", "beat"] = "rhythm"
    window_s: float = Field(2.5, gt=0, le=120)
    hop_s: float = Field(1.25, gt=0, le=120)  # rhythm mode: at most window_s (no signal skipped between windows)
    mixed: Literal["drop", "majority", "priority"] = "drop"
    min_beats: int = Field(2, ge=1)
    # beat mode: RR-interval context of each beat (pedstream.dsp.rr) as an extra model input
    rr_features: bool = False
    rr_local_beats: int = Field(10, ge=1, le=1000)
    rr_long_beats: int = Field(250, ge=1, le=10000)

    @model_validator(mode="after")
    def _rr(self) -> "SegmentConfig":
        if self.rr_features and self.mode != "beat":
            raise ValueError("rr_features needs mode = 'beat' (RR context belongs to one beat)")
        if self.rr_long_beats < self.rr_local_beats:
            raise ValueError("rr_long_beats must be >= rr_local_beats")
        if self.mode == "rhythm" and self.hop_s > self.window_s:
            raise ValueError(f"hop_s ({self.hop_s:g}) must be at most window_s ({self.window_s:g}): "
                             "signal between windows would never be classified")
        return self


class SplitConfig(Section):
    protocol: Literal["segment", "subject", "loso", "all"] = "subject"
    folds: int = Field(5, ge=2)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    seed: int = 0


class SynthConfig(Section):
    records: int = Field(29, ge=1)
    minutes: float = Field(10.0, gt=0)
    seed: int = 0
    mains_hz: float = Field(50.0, ge=0)


# --- Sections below are owned by the model / train / stream code; each owner adds its own fields. ---


class ModelSection(Section):
    """Network hyper-parameters (mirrors pedstream.model.config.ModelConfig)."""

    arch: Literal["fusion", "ecg_only", "iegm_only", "early"] = "fusion"
    d_model: int = Field(64, ge=8)
    n_heads: int = Field(4, ge=1)
    n_layers: int = Field(2, ge=1)
    ff_mult: int = Field(2, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    embed_dim: int = Field(64, ge=8)
    stem_widths: list[int] = [24, 48, 64]
    stem_kernels: list[int] = [7, 5, 5]
    stem_strides: list[int] = [4, 4, 6]
    gate_init: float = Field(0.1, ge=0, le=1)
    modality_dropout: float = Field(0.2, ge=0, le=1)

    @model_validator(mode="after")
    def _stem(self) -> "ModelSection":
        if not (len(self.stem_widths) == len(self.stem_kernels) == len(self.stem_strides) >= 1):
            raise ValueError("stem_widths, stem_kernels and stem_strides must have the same non-zero length")
        if min(*self.stem_widths, *self.stem_kernels, *self.stem_strides) < 1:
            raise ValueError("stem widths, kernels and strides must be >= 1")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} must be divisible by n_heads {self.n_heads}")
        return self


class TrainSection(Section):
    """Training loop, window dataset and evaluation settings (pedstream/train)."""

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-2, ge=0)
    patience: int = Field(6, ge=1)
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    warmup_epochs: float = Field(1.0, ge=0)
    min_lr_ratio: float = Field(0.01, ge=0, le=1)
    grad_clip: float = Field(1.0, ge=0)
    steps_per_epoch: int = Field(0, ge=0)
    balanced_sampling: bool = False
    max_windows_per_class_subject: int = Field(0, ge=0)
    deterministic: bool = True
    threads: int = Field(0, ge=0)
    cache_dir: str = ""
    bootstrap: int = Field(1000, ge=0)
    exclude_records: list[str] = []  # record names left out of every window set (train, eval)
    data_name: str = ""  # name of the (real) data set, shown in the model's description and banner


class MixSection(Section):
    """Real rhythm windows and real noise mixed into the monitor model's training (pedstream.train.rhythm_data)."""

    rhythm_map: str = "mitdb"  # which [labels.rhythm.<name>] maps the real records' rhythm annotations
    max_windows_per_class_record: int = Field(40, ge=0)  # training windows per (real record, class); 0 = all
    eval_windows_per_class_record: int = Field(100, ge=1)  # scored windows per (real record, class), evenly spaced
    noise_records: list[str] = ["bw", "ma", "em"]  # nstdb noise records mixed in ("em" = 118e00 - 118)
    noise_prob: float = Field(0.5, ge=0, le=1)  # fraction of training windows given real noise
    snr_db: tuple[float, float] = (0.0, 18.0)  # noise SNR drawn uniformly from this range (dB, per lead)
    lead_dropout: float = Field(0.3, ge=0, le=1)  # fraction of full 12-lead training windows cut to 1-3 leads
    val_records: int = Field(2, ge=0)  # real records held out of training for early stopping


LossName = Literal["agcacl", "ce", "weighted_ce", "focal", "ldam_drw", "logit_adjusted", "supcon_ce"]


class LossSection(Section):
    """Training objective (pedstream/train/losses). AGCACL and the six baselines share these keys.

    Weights apply to the per-sample terms documented in ``pedstream.train.losses.agcacl``.
    """

    name: LossName = "agcacl"
    # shared by agcacl and supcon_ce: L = ce_weight * CE + contrastive_weight * (SupCon + prototype_weight * Proto)
    ce_weight: float = Field(1.0, ge=0)
    contrastive_weight: float = Field(0.5, ge=0)
    temperature: float = Field(0.1, gt=0)
    # AGCACL (a) prototype alignment
    use_prototypes: bool = True
    prototype_mode: Literal["ema", "learnable"] = "ema"
    prototype_weight: float = Field(1.0, ge=0)
    prototype_temperature: float = Field(0.1, gt=0)
    prototype_momentum: float = Field(0.9, ge=0, le=1)
    # AGCACL (b) class-frequency reweighting (scheme + beta also used by weighted_ce, focal alpha, LDAM-DRW)
    use_reweighting: bool = True
    class_weighting: Literal["effective", "inverse"] = "effective"
    beta: float = Field(0.999, ge=0, lt=1)
    # AGCACL (c) globally informed hard-class modulation
    use_hard_mining: bool = True
    hard_gamma: float = Field(1.0, ge=0)
    similarity_momentum: float = Field(0.9, ge=0, le=1)
    # baselines
    focal_gamma: float = Field(2.0, ge=0)
    focal_alpha: Literal["none", "class"] = "none"
    ldam_max_margin: float = Field(0.5, gt=0)
    ldam_scale: float = Field(1.0, gt=0)
    drw_epoch: int = Field(20, ge=0)
    logit_adjust_tau: float = Field(1.0, ge=0)

    @model_validator(mode="after")
    def _some_weight(self) -> "LossSection":
        if self.name in ("agcacl", "supcon_ce") and self.ce_weight == 0 and self.contrastive_weight == 0:
            raise ValueError(f"{self.name}: ce_weight and contrastive_weight are both 0, nothing to train")
        return self
