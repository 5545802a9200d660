"""One typed configuration, validated once at start.

``load_config(path, overrides)`` reads ``config.toml`` with :mod:`tomllib`, applies ``--set
key.sub=value`` overrides, and validates everything with pydantic (unknown keys rejected). Problems
are raised as one :class:`~pedstream.errors.ConfigError` that lists every bad key path.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from pedstream.errors import ConfigError

__all__ = [
    "Config",
    "SignalConfig",
    "FilterConfig",
    "LabelScheme",
    "LabelsConfig",
    "RhythmMap",
    "SegmentConfig",
    "SplitConfig",
    "SynthConfig",
    "ModelSection",
    "TrainSection",
    "LossSection",
    "MixSection",
    "LossName",
    "RuntimeSection",
    "StreamSection",
    "LSLSection",
    "MQTTSection",
    "ReplaySection",
    "AlarmsSection",
    "HRBand",
    "DemoSection",
    "HL7Section",
    "RecordSection",
    "ClusterSection",
    "RhythmContextSection",
    "default_config_path",
    "load_config",
    "parse_override",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SignalConfig(_Section):
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


class FilterConfig(_Section):
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


class LabelScheme(_Section):
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


class RhythmMap(_Section):
    """Rhythm annotations (``+`` with aux ``"(AFIB"``...) -> classes of the label scheme ``scheme``
    (pedstream.data.rhythm). An aux string listed nowhere, or under ``ignore``, has no class: its
    episodes are excluded (from training windows and from episode scoring)."""

    scheme: str = "leipzig"  # the label scheme whose classes these are
    classes: dict[str, list[str]]
    ignore: list[str] = []


class LabelsConfig(_Section):
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


class SegmentConfig(_Section):
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


class SplitConfig(_Section):
    protocol: Literal["segment", "subject", "loso", "all"] = "subject"
    folds: int = Field(5, ge=2)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    val_fraction: float = Field(0.1, ge=0, lt=1)
    seed: int = 0


class SynthConfig(_Section):
    records: int = Field(29, ge=1)
    minutes: float = Field(10.0, gt=0)
    seed: int = 0
    mains_hz: float = Field(50.0, ge=0)


# --- Sections below are owned by the model / train / stream code; each owner adds its own fields. ---


class ModelSection(_Section):
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


class TrainSection(_Section):
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


class MixSection(_Section):
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


class LossSection(_Section):
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


class RuntimeSection(_Section):
    """ONNX Runtime session settings (pedstream/model/runtime.py)."""

    providers: list[str] = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    intra_op_threads: int = Field(0, ge=0)
    inter_op_threads: int = Field(0, ge=0)
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    allow_spinning: bool = False  # ONNX Runtime pool threads busy-wait between ops
    trt_fp16: bool = True
    trt_cache: bool = True
    trt_cache_dir: str = ".trt_cache"
    cuda_device: int = Field(0, ge=0)
    io_binding: bool = True
    warmup_runs: int = Field(2, ge=0)


class StreamSection(_Section):
    """Streaming engine knobs (pedstream.monitor.engine / pipeline / batcher / dashboard)."""

    max_batch: int = Field(32, ge=1)  # windows per inference call at most
    max_wait_ms: float = Field(20.0, ge=0, le=1000)  # flush a partial batch after this wait (at most 1 s)
    queue_windows: int = Field(4, ge=1)  # pending windows per stream; the oldest are dropped beyond
    gap_tolerance_s: float = Field(0.1, gt=0)  # timestamp jump beyond the expected one = a gap
    resume_gap_s: float = Field(2.0, ge=0)  # known sample loss up to this long is bridged, no DSP restart
    qrs_lead: str = "II"  # heart-rate lead; falls back to the first present ECG lead
    ring_seconds: float = Field(5.0, ge=1, le=600)  # per-stream history kept at least (more with alarm strips on: strip_seconds + 2 windows; ~75 kB/s per stream)
    clipped_fraction: float = Field(0.02, gt=0, le=1)  # rail-stuck sample share that marks "clipped"
    dashboard_hz: float = Field(4.0, gt=0, le=30)
    dashboard_width: int = Field(0, ge=0, le=400)  # 0: the terminal's width, or 100 columns when stdout is not a terminal
    inference_threads: int = Field(1, ge=1)  # worker threads running ONNX Runtime
    inference_inflight: int = Field(2, ge=1, le=8)  # model calls running at once (pipelined: the next batch is stacked while one runs; results in order)
    beat_model: str = ""  # beat (AAMI N/S/V/F/Q) ONNX model classifying each detected beat; "" = off
    beat_queue: int = Field(256, ge=1)  # pending beats per stream for the beat model; the oldest are dropped beyond
    watchdog_s: float = Field(10.0, ge=0)  # a stream or engine task without progress this long is an error event; 0 = off
    infer_timeout_s: float = Field(30.0, ge=0)  # a model call not returned after this long is abandoned (error events); 0 = no limit
    ingest_queue_s: float = Field(10.0, gt=0)  # signal pending per stream in the engine; beyond, its OLDEST chunks are dropped (counted)
    gil_switch_ms: float = Field(1.0, ge=0, le=100)  # Python's thread switch interval while an engine runs (0 = leave it)
    dsp_defer_s: float = Field(1.25, ge=0, le=2.0)  # a stream's chunks wait at most this long for its DSP unless they complete a window (then at once)
    dsp_thread: bool = True  # the in-process DSP runs in a thread of its own (numpy/scipy release the GIL): the loop keeps serving sources and inference meanwhile
    stop_timeout_s: float = Field(5.0, gt=0)  # leaving: a task not stopped this long after its cancellation is named and cancelled again
    workers: int = Field(1, ge=0)  # DSP worker processes (streams pinned by pedstream.monitor.assign); 1 = in-process, 0 = one per core


class DemoSection(_Section):
    """`pedstream demo` / `pedstream run --demo` defaults."""

    duration_s: float = Field(60.0, gt=0)
    speed: float = Field(1.0, gt=0)  # replay speed of the bundled simulated records
    records: str = ""  # folder of records to replay; "" = the bundled pedstream/assets/demo_records


class HL7Section(_Section):
    """`pedstream run --hl7`: alarms (ORU^R40, IHE PCD-04) and observations (ORU^R01, PCD-01) over MLLP."""

    host: str = "127.0.0.1"
    port: int = Field(2575, ge=1, le=65535)
    sending_application: str = "PEDSTREAM"
    sending_facility: str = "PEDSTREAM"
    receiving_application: str = "AM"
    receiving_facility: str = ""
    observation_interval_s: float = Field(30.0, ge=0)  # 0 = no ORU^R01 observations, alarms only
    timeout_s: float = Field(5.0, gt=0)  # connect and acknowledgement wait
    max_pending: int = Field(10_000, ge=1, le=1_000_000)  # messages queued while the receiver is away; beyond, observations dropped (counted), never alarms
    outbox: str = ""  # SQLite outbox (WAL); "" = $XDG_STATE_HOME/pedstream/hl7-outbox.sqlite
    retry_max_s: float = Field(10.0, gt=0, le=600)  # resend backoff doubles from 0.2 s up to this
    undeliverable_s: float = Field(30.0, gt=0, le=86_400)  # a message undelivered this long raises a technical alarm
    drain_s: float = Field(3.0, ge=0, le=60)  # at exit, keep sending this long while connected
    max_ack_bytes: int = Field(65_536, ge=1024, le=1_048_576)  # an answer longer than this drops the connection
    patient_class: str = "I"  # PV1-2 (HL7 table 0004: I inpatient, E emergency, O outpatient, U unknown)
    point_of_care: str = ""  # PV1-3 assigned patient location (e.g. "PICU^^BED7")
    device_id: str = "pedstream"  # OBX-18 equipment instance identifier (namespace PEDSTREAM)


class RecordSection(_Section):
    """`pedstream run --record DIR`: EDF+ files of the monitored streams with the calls as annotations."""

    block_s: float = Field(1.0, gt=0)  # EDF data-record length (seconds of signal per block)
    physical_range_mv: float = Field(10.0, gt=0)  # EDF physical min/max: +-this many mV (values beyond are clipped)
    retry_s: float = Field(5.0, gt=0, le=3600)  # after a storage fault, a new file is tried this long later
    iegm_range_mv: float = Field(50.0, gt=0)  # EDF physical range of IEGM channels (intracardiac signals are larger)


class LSLSection(_Section):
    """LSL network settings (rendered into lsl_api.cfg by pedstream.transports.lsl.config) and inlet knobs."""

    resolve_scope: Literal["machine", "link", "site", "organization", "global"] = "machine"
    known_peers: list[str] = ["127.0.0.1"]
    interfaces: list[str] = ["127.0.0.1"]
    ipv6: bool = False
    port_range: int = Field(1024, ge=32, le=16384)  # lsl_api.cfg [ports] PortRange (liblsl default 32)
    session_id: str = Field("default", min_length=1)
    log_level: int = Field(-1, ge=-3, le=9)
    predicate: str = ""  # XPath predicate; empty = discovery by `types` and channel labels
    types: list[str] = ["ECG", "EKG", "EXG", "IEGM", "EGM"]  # stream types monitored (case-insensitive)
    resolve_interval_s: float = Field(0.5, gt=0)
    forget_after_s: float = Field(2.0, gt=0)
    pull_interval_ms: float = Field(10.0, gt=0)
    max_chunk_samples: int = Field(4096, ge=1)
    lost_timeout_s: float = Field(3.0, gt=0)
    time_correction_interval_s: float = Field(5.0, gt=0)
    dejitter: bool = True  # regular timestamps from the sample count (see pedstream.transports.lsl.inlet)
    jump_tolerance_s: float = Field(1.0, gt=0)
    marker_stream: str = Field("pedstream-events", min_length=1)  # name/source_id of the --lsl-markers outlet
    marker_source_id: str = Field("", max_length=200)  # source_id of the --lsl-markers outlet; "" = marker_stream


class MQTTSection(_Section):
    """MQTT broker and subscriber knobs (pedstream.transports.mqtt)."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = "pedstream/v1"
    keepalive_s: int = Field(30, ge=5)
    timeout_s: float = Field(5.0, gt=0)
    reconnect_min_s: float = Field(0.2, gt=0)
    reconnect_max_s: float = Field(10.0, gt=0)
    reorder_window: int = Field(4, ge=0)
    meta_wait_s: float = Field(2.0, ge=0)
    lost_timeout_s: float = Field(5.0, gt=0)
    qos: int = Field(0, ge=0, le=1)
    probe_interval_s: float = Field(0.25, gt=0)
    # authentication and TLS (the password is never printed or logged)
    username: str | None = None
    password: SecretStr | None = None
    password_file: str = ""
    password_env: str = ""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    # limits (checked before parsing) and per-stream budgets
    max_message_bytes: int = Field(262_144, ge=64)
    max_json_depth: int = Field(8, ge=3, le=64)
    max_channels: int = Field(64, ge=1, le=65535)
    max_samples_per_message: int = Field(16_384, ge=1)
    fs_min: float = Field(50.0, gt=0)
    fs_max: float = Field(10_000.0, gt=0)
    budget_factor: float = Field(4.0, ge=1)
    max_messages_per_s: float = Field(500.0, gt=0)
    max_streams: int = Field(256, ge=1)
    forget_after_s: float = Field(300.0, gt=0)
    max_queued_messages: int = Field(10_000, ge=100)
    error_burst: int = Field(3, ge=1)
    error_period_s: float = Field(60.0, gt=0)
    # stream lifecycle and per-publisher budgets (docs/security.md)
    stale_meta_s: float = Field(60.0, gt=0)  # a tracked stream that never sent data is released after this (meta parked)
    cpu_share: float = Field(0.1, gt=0, le=1)  # CPU (share of a core) a publisher may use per stream it publishes
    cpu_burst_s: float = Field(2.0, gt=0, le=60)  # ... with this many seconds of that share as burst
    metas_per_s: float = Field(1.0, gt=0, le=100)  # meta messages per publisher per second (burst meta_burst); beyond, dropped unread
    meta_burst: int = Field(5, ge=1, le=1000)

    @field_validator("password", mode="before")
    @classmethod
    def _password_text(cls, v: Any) -> Any:
        return v if v is None or isinstance(v, (str, SecretStr)) else str(v)  # never echo it in an error

    @model_validator(mode="after")
    def _mqtt_consistent(self) -> "MQTTSection":
        if self.fs_min >= self.fs_max:
            raise ValueError(f"fs_min ({self.fs_min:g}) must be below fs_max ({self.fs_max:g})")
        if sum(bool(x) for x in (self.password, self.password_file, self.password_env)) > 1:
            raise ValueError("give at most one of password, password_file, password_env")
        if bool(self.cert_file) != bool(self.key_file):
            raise ValueError("cert_file and key_file go together (client certificate)")
        if (self.ca_file or self.cert_file) and not self.tls:
            raise ValueError("ca_file/cert_file/key_file need tls = true")
        return self


class ClusterSection(_Section):
    """Monitor workers on Ray (pedstream.cluster): ``pedstream run --source mqtt --workers N`` and ``pedstream central``."""

    heartbeat_s: float = Field(0.5, gt=0)  # the supervisor pings every worker actor this often
    heartbeat_timeout_s: float = Field(2.0, gt=0)  # a ping not answered within this is a missed heartbeat
    heartbeat_misses: int = Field(3, ge=1)  # this many missed heartbeats in a row: the worker is dead (killed, its streams move)
    replace_dead: bool = False  # start a replacement (same name) for a dead worker; when up it takes back the streams it wins
    worker_cpus: float = Field(1.0, ge=0)  # Ray CPUs reserved per worker actor (0 = any number per node)
    worker_start_timeout_s: float = Field(60.0, gt=0)  # a worker not up (broker reached, model loaded) within this is an error
    presence_s: float = Field(5.0, gt=0)  # a worker republishes its retained presence (<prefix>/_workers/<name>) this often
    lock_wait_s: float = Field(1.0, gt=0)  # the supervisor lock: wait this long for another supervisor's lock, before and after taking it
    max_streams: int = Field(4096, ge=1)  # stream ids the supervisor assigns at most (retained metas beyond are refused, counted)
    ray_connect_timeout_s: float = Field(10.0, gt=0)  # --ray-address: an address that does not answer within this is an error
    stale_after_s: float = Field(10.0, gt=0)  # pedstream central: a stream without an event this long is shown stale


class ReplaySection(_Section):
    """Defaults of ``pedstream replay`` and of in-process replay sources."""

    speed: float = Field(1.0, gt=0)
    chunk_ms: float = Field(50.0, gt=0)
    wake_ms: float = Field(5.0, ge=0, le=1000)  # the in-process pacer wakes at most this often (chunks up to this late)
    encoding: Literal["binary", "json"] = "binary"
    dtype: Literal["int16", "float32"] = "int16"
    int16_scale_mv: float = Field(0.001, gt=0)
    loop: bool = False
    mqtt_bundle_bytes: int = Field(0, ge=0, le=16_777_216)


class HRBand(_Section):
    """Heart-rate alarm limits (bpm) for children younger than ``max_age_years``."""

    name: str
    max_age_years: float = Field(gt=0)
    low_bpm: float = Field(gt=0)
    high_bpm: float = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> "HRBand":
        if self.low_bpm >= self.high_bpm:
            raise ValueError(f"band {self.name!r}: low_bpm must be below high_bpm")
        return self


# Default bands: the PALS normal ranges (AHA PALS Provider Manual 2020, "Normal heart rates";
# awake/asleep ranges 0-3 mo 90-205, 3 mo-2 y 90-180, 2-10 y 60-140, >10 y 50-100) checked against
# the 1st/99th centiles of Fleming et al., Lancet 2011;377:1011-18, widened slightly into alarm
# limits. NOT clinically validated: set them to the unit's own policy.
_HR_BANDS = [
    {"name": "<1 y", "max_age_years": 1.0, "low_bpm": 90.0, "high_bpm": 205.0},
    {"name": "1-2 y", "max_age_years": 3.0, "low_bpm": 80.0, "high_bpm": 190.0},
    {"name": "3-5 y", "max_age_years": 6.0, "low_bpm": 65.0, "high_bpm": 160.0},
    {"name": "6-11 y", "max_age_years": 12.0, "low_bpm": 60.0, "high_bpm": 140.0},
    {"name": "12-15 y", "max_age_years": 16.0, "low_bpm": 50.0, "high_bpm": 130.0},
    {"name": "16-18 y", "max_age_years": 19.0, "low_bpm": 50.0, "high_bpm": 120.0},
]


class AlarmsSection(_Section):
    """Rhythm calls and alarms (pedstream.monitor.alarms)."""

    smoothing: Literal["mean", "ema"] = "mean"
    smoothing_windows: int = Field(3, ge=1)
    call_hold_windows: int = Field(2, ge=1)  # a new rhythm call needs this many consecutive windows
    onset_p: float = Field(0.6, gt=0, le=1)
    offset_p: float = Field(0.4, ge=0, le=1)
    onset_windows: int = Field(2, ge=1)
    offset_windows: int = Field(2, ge=1)
    priorities: dict[str, Literal["high", "medium", "advisory", "none"]] = {
        "vt": "high", "avrt": "medium", "avnrt": "medium", "af_afl": "medium",
        "pac": "advisory", "pjc": "advisory", "pvc": "advisory",
    }
    default_priority: Literal["high", "medium", "advisory", "none"] = "none"
    hr_bands: list[HRBand] = [HRBand(**b) for b in _HR_BANDS]
    default_age_years: float | None = Field(None, ge=0)
    hr_onset_s: float = Field(2.0, ge=0, le=60)  # the beat-by-beat rate beyond a limit this long raises hr_high/hr_low
    hr_offset_s: float = Field(3.0, ge=0, le=60)  # back inside (by hr_hysteresis_bpm) this long clears it
    hr_hysteresis_bpm: float = Field(5.0, ge=0)
    hr_priority: Literal["high", "medium", "advisory"] = "medium"
    strips: bool = True
    strip_seconds: float = Field(10.0, gt=0)
    strip_post_s: float = Field(3.0, ge=0)
    dir: str = ""  # alarm strip folder; "" = "alarms" beside the events file, else the user's data directory
    keep_runs: int = Field(20, ge=1, le=100_000)  # run folders (run-<UTC start>) kept in the strip folder
    keep_mb: float = Field(200.0, gt=0)  # and at most this much in all: older run folders are removed at start
    pvc_run_beats: int = Field(3, ge=2)  # consecutive V beats (beat model) that raise pvc_run
    pvc_run_priority: Literal["high", "medium", "advisory"] = "advisory"

    @model_validator(mode="after")
    def _hyst(self) -> "AlarmsSection":
        if self.offset_p > self.onset_p:
            raise ValueError("offset_p must not exceed onset_p (hysteresis)")
        if not self.hr_bands:
            raise ValueError("hr_bands needs at least one band")
        if self.strip_post_s >= self.strip_seconds:
            raise ValueError("strip_post_s must be shorter than strip_seconds")
        return self


class WebSection(_Section):
    """The web central station (``pedstream run --web``, pedstream.web; docs/web.md)."""

    bind: str = "127.0.0.1:8765"  # HOST:PORT; a non-loopback address needs cert_file, key_file and users_file
    users_file: str = ""  # users and argon2 password hashes (`pedstream web adduser`); "" = a one-time login, loopback only
    cert_file: str = ""  # TLS certificate (PEM); with key_file the station serves https/wss only
    key_file: str = ""  # TLS private key (PEM)
    display_hz: float = Field(250.0, gt=0, le=1000)  # waveforms are decimated to about this rate for display
    ring_s: float = Field(20.0, gt=0, le=300)  # seconds of display signal held per stream
    frame_hz: float = Field(20.0, gt=0, le=60)  # waveform frames per second sent to each browser
    state_hz: float = Field(2.0, gt=0, le=20)  # bed tile updates (rate, call, alarm) per second
    max_clients: int = Field(32, ge=1, le=1024)  # open screens at most; more are refused
    session_s: float = Field(43200.0, gt=0)  # a login lasts this long
    login_max_failures: int = Field(5, ge=1)  # failed logins per user name or client address within login_window_s
    login_window_s: float = Field(300.0, gt=0)  # ... after which further attempts are refused until the window passes
    silence_s: float = Field(120.0, gt=0)  # default silence of an alarm, then it sounds again if still active
    max_silence_s: float = Field(600.0, gt=0)  # longest silence of a medium or advisory alarm
    max_silence_high_s: float = Field(120.0, gt=0)  # longest silence (and acknowledgement) of a high-priority (life-threatening) alarm


_RC_CLASSES = ("sinus", "af_afl", "svt", "vt", "vf", "asystole", "other", "artefact")


class RhythmContextSection(_Section):
    """The rhythm-context layer (pedstream.monitor.rhythm_context; docs/rhythm.md)."""

    enabled: bool = False  # pedstream run/demo: run the layer (model below); Engine(rhythm_model=...) in code
    model: str = ""  # rhythm ONNX model; "" = the packaged pedstream/assets/rhythm_model.onnx
    context_s: float = Field(30.0, ge=5, le=300)  # RR context per stream, seconds
    signal_s: float = Field(8.0, ge=2, le=30)  # QRS-lead seconds for the signal features
    every_windows: int = Field(1, ge=1, le=16)  # one rhythm call per stream every this many windows (hops)
    feature_processes: int = Field(1, ge=0, le=64)  # processes computing the features (0 = a thread of the engine process)
    max_beats: int = Field(512, ge=16, le=4096)  # beat times kept per stream (bounds memory)
    asystole_s: float = Field(4.0, ge=2.0, le=10.0)  # no QRS this long with a readable signal: asystole alarm
    vt_run_beats: int = Field(3, ge=0, le=20)  # VT fast path: a run of this many ventricular-like beats > 100 bpm raises vt at once (0 = off)
    vt_run_corr: Literal[0.5, 0.7] = 0.7  # QRS-template correlation below which a beat is ventricular-like (feature vt_run_70 / vt_run_50)
    one_ventricular: Literal["off", "hold", "escalate"] = "off"  # hold: no VT onset while VF is on; escalate: also a VF onset ends an active VT alarm
    refractory_s: float = Field(0.0, ge=0, le=600)  # after an alarm ends, the same class is not raised again for this long (0 = off)
    vt_run_max_artefact_p: float = Field(0.15, gt=0, le=1)  # VT fast path only while p(artefact) < this (1 = no gate)
    vt_run_min_rate_bpm: float = Field(150.0, ge=0, le=300)  # VT fast path only when the run's mean rate is at least this (0 = no gate)
    asystole_max_amp_mv: float = Field(0.0, ge=0, le=20)  # asystole from the beats only when the lead's range is at most this, mV (0 = no gate)
    af_rr_confirm: bool = False  # af_afl goes on only at a call where the RR-irregularity rule also says AF
    af_rr_confirm_max_p: float = Field(1.0, ge=0, le=1)  # ... asked for only while p(af_afl) is at most this (1 = always)
    vt_confirm_run: int = Field(3, ge=0, le=20)  # the model's VT onset needs a run of this many ventricular-like fast beats in the lead (0 = off)
    vt_confirm_max_p: float = Field(0.8, ge=0, le=1)  # ... asked for only while p(vt) is at most this (1 = always)
    asystole_max_organized_p: float = Field(0.5, ge=0, le=1)  # asystole from the beats only while p(sinus + af_afl + svt + other) is at most this (1 = off)
    onset_calls: dict[str, int] = {"vt": 2, "vf": 2, "af_afl": 6, "svt": 4, "asystole": 3, "artefact": 3}
    offset_calls: int = Field(4, ge=1)  # calls below offset_p that end a rhythm alarm
    onset_p: float = Field(0.5, gt=0, le=1)
    offset_p: float = Field(0.35, gt=0, le=1)
    priorities: dict[str, Literal["high", "medium", "advisory", "none"]] = {
        "vt": "high", "vf": "high", "asystole": "high", "af_afl": "medium", "svt": "medium", "other": "none",
        "artefact": "advisory", "sinus": "none"}
    labels: dict[str, dict[str, list[str]]] = {}  # source -> {class: [source labels]}; unlisted = excluded

    @model_validator(mode="after")
    def _classes(self) -> "RhythmContextSection":
        for src, table in self.labels.items():
            bad = sorted(set(table) - set(_RC_CLASSES))
            if bad:
                raise ValueError(f"labels.{src}: {bad} are not rhythm classes {list(_RC_CLASSES)}")
        bad = sorted((set(self.onset_calls) | set(self.priorities)) - set(_RC_CLASSES))
        if bad:
            raise ValueError(f"{bad} are not rhythm classes {list(_RC_CLASSES)}")
        if self.offset_p > self.onset_p:
            raise ValueError("offset_p must not exceed onset_p (hysteresis)")
        return self


class Config(_Section):
    signal: SignalConfig = SignalConfig()
    filters: FilterConfig = FilterConfig()
    labels: LabelsConfig
    segments: SegmentConfig = SegmentConfig()
    split: SplitConfig = SplitConfig()
    synth: SynthConfig = SynthConfig()
    model: ModelSection = ModelSection()
    train: TrainSection = TrainSection()
    loss: LossSection = LossSection()
    mix: MixSection = MixSection()
    runtime: RuntimeSection = RuntimeSection()
    stream: StreamSection = StreamSection()
    lsl: LSLSection = LSLSection()
    mqtt: MQTTSection = MQTTSection()
    replay: ReplaySection = ReplaySection()
    alarms: AlarmsSection = AlarmsSection()
    demo: DemoSection = DemoSection()
    hl7: HL7Section = HL7Section()
    record: RecordSection = RecordSection()
    cluster: ClusterSection = ClusterSection()
    rhythm_context: RhythmContextSection = RhythmContextSection()
    web: WebSection = WebSection()


def default_config_path() -> Path:
    """The packaged default (a copy of the repository's ``config.toml``)."""
    repo = Path(__file__).resolve().parent.parent / "config.toml"
    if repo.is_file():
        return repo
    return Path(str(resources.files("pedstream") / "default_config.toml"))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b.c=value"`` -> (["a","b","c"], value). The value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError([(text, "an override must look like section.key=value")], source="--set")
    key, raw = text.split("=", 1)
    path = [p.strip() for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError([(key, "empty key component")], source="--set")
    _check_bounded(text, where=key.strip()[:80], source="--set", limit=MAX_OVERRIDE_CHARS)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return path, value


MAX_CONFIG_BYTES = 1 << 20  # a configuration file larger than this is refused (it is not one)
MAX_OVERRIDE_CHARS = 4096
MAX_NESTING = 32  # arrays/tables nested deeper are refused before parsing


def _check_bounded(text: str, *, where: str, source: str, limit: int) -> None:
    """Refuse, before parsing, text longer than ``limit`` or nesting ``[``/``{`` deeper than MAX_NESTING."""
    if len(text) > limit:
        raise ConfigError([(where, f"{len(text)} characters, over the limit of {limit}")], source=source)
    depth = top = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            top = max(top, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    if top > MAX_NESTING:
        raise ConfigError([(where, f"nests {top} levels deep, over the limit of {MAX_NESTING}")], source=source)


def _read_text_bounded(src: Path) -> str:
    """A configuration file's text, read at most MAX_CONFIG_BYTES (+1) bytes (``/dev/zero`` is refused)."""
    try:
        with open(src, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([("(file)", f"cannot read: {exc.strerror or exc}")], source=str(src)) from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError([("(file)", f"larger than {MAX_CONFIG_BYTES // 1024} KiB: not a configuration file")],
                          source=str(src))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([("(file)", "not UTF-8 text: not a configuration file")], source=str(src)) from exc
    _check_bounded(text, where="(syntax)", source=str(src), limit=MAX_CONFIG_BYTES)
    return text


def _apply(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError([(".".join(path), f"{part!r} is not a table")], source="--set")
    node[path[-1]] = value


def _format_errors(err: ValidationError) -> list[tuple[str, str]]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and not isinstance(e["input"], (dict, list)):
            msg = f"{msg} (got {json.dumps(e['input'], default=str)})"
        out.append((loc, msg))
    return out


def _read_toml(src: Path, depth: int = 0) -> dict[str, Any]:
    """The TOML of ``src``; a top-level ``extends = "default"`` (the packaged default) or ``extends =
    "PATH"`` (relative to ``src``) loads that file first and deep-merges this one over it."""
    text = _read_text_bounded(src)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([("(syntax)", str(exc))], source=str(src)) from exc
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str) or depth >= 4:
        raise ConfigError([("extends", "must be \"default\" or a path, at most 4 files deep")], source=str(src))
    base_path = default_config_path() if base == "default" else (src.parent / base)
    return _merge(_read_toml(base_path, depth + 1), data)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    src = Path(path) if path is not None else default_config_path()
    data = _read_toml(src)
    applied: list[tuple[list[str], str]] = []
    for ov in overrides:
        keys, value = parse_override(ov)
        _apply(data, keys, value)
        applied.append((keys, ov.strip()))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = _format_errors(exc)
        raise ConfigError(problems, source=str(src),
                          sources=[_blame(key, applied, str(src)) for key, _ in problems]) from exc


def _blame(key: str, applied: list[tuple[list[str], str]], file: str) -> str:
    """``--set KEY=VALUE`` when the bad key came from an override (the last one that touched it), else the file."""
    loc = key.split(".")
    for keys, text in reversed(applied):
        n = min(len(loc), len(keys))
        if loc[:n] == keys[:n]:
            return f"--set {text}"
    return file