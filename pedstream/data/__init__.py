"""WFDB data layer: channel layouts, loading, annotations, label grouping, segments, subjects.

Imports are lazy (resolved on first attribute access) so ``import pedstream.data`` stays light.
"""

from __future__ import annotations

from pedstream._lazy import lazy_exports

_LAZY: dict[str, str] = {
    # channels
    "ECG_CHANNELS": "pedstream.data.channels",
    "IEGM_CHANNELS": "pedstream.data.channels",
    "CANONICAL_CHANNELS": "pedstream.data.channels",
    "LEIPZIG_LAYOUTS": "pedstream.data.channels",
    "ChannelMap": "pedstream.data.channels",
    "resolve_channels": "pedstream.data.channels",
    # loader
    "Record": "pedstream.data.loader",
    "Signal": "pedstream.data.loader",
    "open_record": "pedstream.data.loader",
    "list_records": "pedstream.data.loader",
    "identify_layout": "pedstream.data.loader",
    # annotations
    "Annotations": "pedstream.data.annotations",
    "read_annotations": "pedstream.data.annotations",
    "write_annotations": "pedstream.data.annotations",
    # labels and segments
    "LabelGrouping": "pedstream.data.labels",
    "Segment": "pedstream.data.segments",
    "make_segments": "pedstream.data.segments",
    # subjects
    "SubjectInfo": "pedstream.data.subjects",
    "read_subjects": "pedstream.data.subjects",
    "write_subjects": "pedstream.data.subjects",
    "folder_subjects": "pedstream.data.subjects",
    "subject_map": "pedstream.data.subjects",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
