"""``pedstream data fetch``: download the real Leipzig Heart Center ECG-Database from PhysioNet.

The download itself is :func:`wfdb.dl_database`. Before it starts, one short request for the
database's ``RECORDS`` file checks that PhysioNet (or the mirror named by ``base_url`` /
``$PEDSTREAM_PHYSIONET_URL``) answers; when it does not, the command fails with one line that says
how to download the files by hand and where to put them.
"""

from __future__ import annotations

import os
import posixpath
import urllib.error
import urllib.request
from pathlib import Path

from pedstream.config import Config
from pedstream.errors import FetchError

__all__ = ["DATABASE", "VERSION", "PHYSIONET_FILES_URL", "manual_download_hint", "fetch_command"]

DATABASE = "leipzig-heart-center-ecg"
VERSION = "1.0.0"
PHYSIONET_FILES_URL = "https://physionet.org/files/"
ENV_URL = "PEDSTREAM_PHYSIONET_URL"


def manual_download_hint(dest: Path, reason: str) -> str:
    """The one-line error: what failed, the manual download command and where the files go."""
    url = f"{PHYSIONET_FILES_URL}{DATABASE}/{VERSION}/"
    return (f"cannot download {DATABASE} from PhysioNet ({reason}); download it by hand with "
            f"`wget -r -N -c -np {url}` (or the ZIP at https://physionet.org/content/{DATABASE}/{VERSION}/) "
            f"and put the x*.hea/.dat/.atr files in {dest}")


def _probe(base_url: str, timeout_s: float) -> None:
    url = posixpath.join(base_url, DATABASE, VERSION, "RECORDS")
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - fixed https/http URL
            if not resp.read(64).strip():
                raise FetchError(f"{url} is empty")
    except urllib.error.HTTPError as exc:
        raise FetchError(f"{url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"{url} is unreachable: {reason}") from exc


def fetch_command(cfg: Config, *, dest: Path, base_url: str | None = None, timeout_s: float = 15.0) -> None:
    """Download every record (``.hea``, ``.dat``, ``.atr``) into ``dest``.

    Raises :class:`FetchError` (exit code 1, one line) when the server cannot be reached or the
    download fails.
    """
    import wfdb
    from wfdb.io import download

    del cfg  # the download does not depend on the configuration
    dest = Path(dest)
    base = base_url or os.environ.get(ENV_URL) or PHYSIONET_FILES_URL
    if not base.endswith("/"):
        base += "/"
    try:
        _probe(base, timeout_s)
    except FetchError as exc:
        raise FetchError(manual_download_hint(dest, exc.message)) from exc
    dest.mkdir(parents=True, exist_ok=True)
    previous = download.config.db_index_url
    try:
        download.set_db_index_url(base)
        wfdb.dl_database(f"{DATABASE}/{VERSION}", dl_dir=str(dest), annotators="all")
    except Exception as exc:  # network errors surface as many types inside wfdb
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FetchError(manual_download_hint(dest, f"download failed: {first}")) from exc
    finally:
        download.set_db_index_url(previous)
    n = len(list(dest.glob("*.hea")))
    print(f"downloaded {n} records of {DATABASE} {VERSION} into {dest}")
