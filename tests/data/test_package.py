"""`pedstream.data` re-exports its public API lazily and imports no heavy module on import."""

from __future__ import annotations

import subprocess
import sys

import pedstream.data as data


def test_public_api_resolves():
    for name in data.__all__:
        assert getattr(data, name) is not None
    assert {"open_record", "read_annotations", "write_annotations", "LabelGrouping", "make_segments",
            "read_subjects", "list_records", "Annotations", "Segment"} <= set(data.__all__)


def test_import_is_light():
    code = ("import sys, pedstream.data; "
            "bad = [m for m in ('torch', 'matplotlib', 'wfdb', 'sklearn', 'pylsl') if m in sys.modules]; "
            "assert not bad, bad")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
