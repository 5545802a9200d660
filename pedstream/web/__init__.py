"""The web central station: bed tiles with live waveforms, alarm handling and audit, in a browser
(``pedstream run --web``, ``pedstream demo --web``; docs/web.md). Needs the ``web`` extra
(starlette, uvicorn, websockets, argon2-cffi).

- :mod:`pedstream.web.server`: :class:`WebService` (set-up checks, uvicorn beside the monitor);
- :mod:`pedstream.web.station`: :class:`WebStation` (the tap on the sources' queue, the sink, screens);
- :mod:`pedstream.web.app`: the HTTP/WebSocket endpoints and their security;
- :mod:`pedstream.web.auth`: users file, argon2 hashes, sessions, failed-login limiter;
- :mod:`pedstream.web.display`: display rings (decimated signal) and binary waveform frames;
- :mod:`pedstream.web.alarmstate`: acknowledge / silence / resound.
"""

from pedstream.web.auth import WebError, add_user

__all__ = ["WebError", "WebService", "WebStation", "add_user"]


def __getattr__(name: str):  # the server parts import starlette/uvicorn: only when used
    if name == "WebService":
        from pedstream.web.server import WebService

        return WebService
    if name == "WebStation":
        from pedstream.web.station import WebStation

        return WebStation
    raise AttributeError(name)
