"""The configuration sections of the running monitor: ONNX Runtime, the streaming engine, sources (LSL,
MQTT, replay), alarms, the demo, HL7, recording, the cluster, the rhythm-context layer and the web
view (``[runtime]`` .. ``[web]`` of ``config.toml``). Part of :mod:`pedstream.config`, which assembles
them into :class:`~pedstream.config.Config`; import them from there."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from pedstream.config_offline import Section

__all__ = ['AlarmsSection', 'ClusterSection', 'DemoSection', 'HL7Section', 'HRBand', 'LSLSection', 'MQTTSection', 'RecordSection', 'ReplaySection', 'RhythmContextSection', 'RuntimeSection', 'StreamSection', 'WebSection']


class RuntimeSection(Section):
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


class StreamSection(Section):
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


class DemoSection(Section):
    """`pedstream demo` / `pedstream run --demo` defaults."""

    duration_s: float = Field(60.0, gt=0)
    speed: float = Field(1.0, gt=0)  # replay speed of the bundled simulated records
    records: str = ""  # folder of records to replay; "" = the bundled pedstream/assets/demo_records


class HL7Section(Section):
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


class RecordSection(Section):
    """`pedstream run --record DIR`: EDF+ files of the monitored streams with the calls as annotations."""

    block_s: float = Field(1.0, gt=0)  # EDF data-record length (seconds of signal per block)
    physical_range_mv: float = Field(10.0, gt=0)  # EDF physical min/max: +-this many mV (values beyond are clipped)
    retry_s: float = Field(5.0, gt=0, le=3600)  # after a storage fault, a new file is tried this long later
    iegm_range_mv: float = Field(50.0, gt=0)  # EDF physical range of IEGM channels (intracardiac signals are larger)


class LSLSection(Section):
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


class MQTTSection(Section):
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


class ClusterSection(Section):
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


class ReplaySection(Section):
    """Defaults of ``pedstream replay`` and of in-process replay sources."""

    speed: float = Field(1.0, gt=0)
    chunk_ms: float = Field(50.0, gt=0)
    wake_ms: float = Field(5.0, ge=0, le=1000)  # the in-process pacer wakes at most this often (chunks up to this late)
    encoding: Literal["binary", "json"] = "binary"
    dtype: Literal["int16", "float32"] = "int16"
    int16_scale_mv: float = Field(0.001, gt=0)
    loop: bool = False
    mqtt_bundle_bytes: int = Field(0, ge=0, le=16_777_216)


class HRBand(Section):
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


class AlarmsSection(Section):
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


class WebSection(Section):
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


class RhythmContextSection(Section):
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
