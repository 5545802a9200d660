"""``pedstream mqtt metas``: list the retained metas on the ``[mqtt]`` broker and clear stale ones
(:mod:`pedstream.transports.mqtt.admin`; docs/security.md "Stale retained metas")."""

from __future__ import annotations

import asyncio
import json

import click

from pedstream.cliutil import with_config
from pedstream.config import Config

__all__ = ["mqtt"]


@click.group("mqtt")
def mqtt() -> None:
    """The MQTT broker as pedstream sees it (retained metas)."""


@mqtt.command("metas")
@click.option("--listen", "listen_s", type=click.FloatRange(min=0.5, max=600), default=3.0, show_default=True,
              help="Seconds to watch the streams' data: a meta whose stream sent none meanwhile is stale.")
@click.option("--clear-stale", "clear_stale", is_flag=True,
              help="Delete the stale retained metas (needs write access to their meta topics).")
@click.option("--clear", "clear_ids", multiple=True, metavar="STREAM_ID",
              help="Delete this stream's retained meta, stale or not (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per meta on stdout.")
@with_config
def metas(cfg: Config, listen_s: float, clear_stale: bool, clear_ids: tuple[str, ...], as_json: bool) -> None:
    """List the retained metas under [mqtt] topic_prefix, each with the data messages its stream sent while
    listening; with --clear-stale (or --clear ID) delete them on the broker."""
    from pedstream.errors import ConfigError, PayloadError
    from pedstream.transports.mqtt.admin import clear_metas, scan_metas
    from pedstream.transports.mqtt.client import MQTTAuth
    from pedstream.transports.mqtt.wire import check_stream_id

    m = cfg.mqtt
    auth = MQTTAuth.from_section(m)
    for sid in clear_ids:
        try:
            check_stream_id(sid)
        except PayloadError as exc:
            raise ConfigError([("--clear", f"{sid[:64]!r} is not a stream id (1-64 characters from A-Z a-z 0-9 _ . -)")],
                              source="mqtt metas") from exc
    found = asyncio.run(scan_metas(host=m.host, port=m.port, prefix=m.topic_prefix, auth=auth, listen_s=listen_s,
                                   timeout_s=m.timeout_s))
    for r in found:
        if as_json:
            click.echo(json.dumps(r.as_dict()))
        else:
            what = r.problem or f"{r.fs:g} Hz, {r.channels} ch" + (f", publisher {r.publisher}" if r.publisher else "")
            click.echo(f"{r.stream_id:<24} {'STALE' if r.stale else 'live':<6} {r.data_messages:>6} data msg  {what}")
    stale = [r.stream_id for r in found if r.stale]
    click.echo(f"{len(found)} retained meta(s) under {m.topic_prefix}/, {len(stale)} stale "
               f"(no data in {listen_s:g} s)", err=True)
    targets = sorted(set(clear_ids) | (set(stale) if clear_stale else set()))
    if targets:
        n = asyncio.run(clear_metas(targets, host=m.host, port=m.port, prefix=m.topic_prefix, auth=auth,
                                    timeout_s=m.timeout_s))
        click.echo(f"cleared {n} retained meta(s)", err=True)
