"""A Leipzig-format simulator: electrophysiologically grounded 12-lead ECG + intracardiac electrograms.

SIMULATED signals, not clinical data. ``synth_command`` writes WFDB folders (``pedstream data
synth``); ``simulate_record`` / ``synthesize`` simulate one record in memory.
"""

from pedstream.data.synth.command import LAYOUT_CYCLE, build_record, synth_command
from pedstream.data.synth.episodes import PRIORS, random_label_stream, read_real_sequences, real_label_stream
from pedstream.data.synth.simulate import (
    DEFAULT_GAIN,
    LEIPZIG_FS,
    RecordOptions,
    SimulatedRecord,
    simulate_record,
    synthesize,
)
from pedstream.data.synth.subject import Subject, random_subject, record_name

__all__ = [
    "synth_command",
    "build_record",
    "simulate_record",
    "synthesize",
    "SimulatedRecord",
    "RecordOptions",
    "Subject",
    "random_subject",
    "record_name",
    "random_label_stream",
    "real_label_stream",
    "read_real_sequences",
    "PRIORS",
    "LAYOUT_CYCLE",
    "LEIPZIG_FS",
    "DEFAULT_GAIN",
]
