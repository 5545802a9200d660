"""``pedstream data inspect`` and ``pedstream data labels``: what is in a folder of records, and the
class counts of the real Leipzig annotation table after label grouping.

Per record, ``inspect`` reports the beat-label class counts (``class_counts``: the ``[labels]``
grouping, what training labels) and the reference a replay's calls are compared with
(``truth_source``): ``rhythm`` where the record has rhythm annotations (``+`` with an aux such as
``(AFIB``), mapped as ``pedstream score episodes`` maps them (:func:`pedstream.data.rhythm.scheme_reference`),
with the seconds of each class (``rhythm_s``; ``rhythm_excluded_s``: rhythms the map leaves out,
or before the first rhythm annotation); ``beats`` where there are none. The table shows the reference:
the rhythm durations, or the beat counts. Records in none of the Leipzig layouts are summed by their
set of present channels (``totals.channel_sets``)."""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from pedstream.config import Config
from pedstream.data.channels import CANONICAL_CHANNELS
from pedstream.data.labels import LabelGrouping
from pedstream.data.loader import list_records, open_record
from pedstream.data.rhythm import scheme_reference
from pedstream.data.subjects import subject_map
from pedstream.errors import AnnotationError, RecordError

__all__ = ["inspect_folder", "inspect_command", "label_table_counts", "labels_command", "is_child_record"]

TABLE_COLUMNS = ("patient_id", "label_symbol", "dataset_aux_string")


def _record_summary(path: Path, cfg: Config, grouping: LabelGrouping, subjects: dict[str, str]) -> dict[str, Any]:
    rec = open_record(path, cfg.signal)
    chans = rec.channels
    flat = rec.flat
    clip = rec.clipped_fraction
    ann = rec.annotations()
    counts = grouping.counts(ann.symbol, ann.aux) if ann is not None else {}
    present = [c for c, p in zip(chans, rec.present) if p]
    return {
        "record": rec.name,
        "subject": subjects.get(rec.name, rec.name),
        "layout": rec.layout,
        "fs": rec.fs,
        "n_samples": rec.n_samples,
        "duration_s": round(rec.duration_s, 3),
        "channels_present": int(rec.present.sum()),
        "channels_total": len(chans),
        "missing": [c for c, m in zip(chans, rec.mapped) if not m],
        "ignored": list(rec.channel_map.ignored),
        "unknown": list(rec.channel_map.unknown),
        "clipped": {c: round(100.0 * float(f), 3) for c, f in zip(chans, clip) if f > 0},
        "flat": [c for c, f in zip(chans, flat) if f],
        "annotated": ann is not None,
        "class_counts": counts,
        "present": present,
        **_reference(cfg, ann, rec),
    }


def _reference(cfg: Config, ann: Any, rec: Any) -> dict[str, Any]:
    """``truth_source`` and, for a rhythm reference, ``rhythm_map``, ``rhythm_s`` and ``rhythm_excluded_s``."""
    if ann is None:
        return {"truth_source": None}
    ref = scheme_reference(cfg, ann, n_samples=rec.n_samples, fs=rec.fs, record=rec.name)
    if ref is None:
        return {"truth_source": "beats"}
    name, episodes = ref
    per: Counter[str] = Counter()
    for ep in episodes:
        per[ep.label or ""] += ep.duration_s
    excluded = per.pop("", 0.0) + (episodes[0].start_s if episodes else rec.duration_s)
    return {"truth_source": "rhythm", "rhythm_map": name,
            "rhythm_s": {k: round(v, 3) for k, v in sorted(per.items(), key=lambda kv: -kv[1])},
            "rhythm_excluded_s": round(excluded, 3)}


def inspect_folder(cfg: Config, folder: Path) -> dict[str, Any]:
    """Summaries of every record in ``folder`` plus totals (the ``--json`` document)."""
    grouping = LabelGrouping.from_config(cfg)  # configuration problems first (exit code 2)
    paths = list_records(folder)
    if not paths:
        raise RecordError(str(folder), "no WFDB records (*.hea or RECORDS) in this folder")
    subjects = subject_map(folder)
    rows: list[dict[str, Any]] = []
    for p in paths:
        try:
            rows.append(_record_summary(p, cfg, grouping, subjects))
        except (RecordError, AnnotationError) as exc:
            rows.append({"record": p.name, "error": str(exc)})
    ok = [r for r in rows if "error" not in r]
    totals_counts: Counter[str] = Counter()
    rhythm_s: Counter[str] = Counter()
    for r in ok:
        totals_counts.update(r["class_counts"])
        rhythm_s.update(r.get("rhythm_s", {}))
    totals = {
        "records": len(rows),
        "readable": len(ok),
        "duration_s": round(sum(r["duration_s"] for r in ok), 3),
        "layouts": dict(Counter(r["layout"] for r in ok if r["layout"] is not None)),
        "channel_sets": dict(Counter(" ".join(r["present"]) for r in ok if r["layout"] is None)),
        "class_counts": {c: int(totals_counts.get(c, 0)) for c in grouping.classes},
        "classes_seen": sum(1 for c in grouping.classes if totals_counts.get(c, 0) > 0),
        "truth_sources": dict(Counter(str(r["truth_source"]) for r in ok if r["truth_source"])),
        "rhythm_s": {k: round(v, 3) for k, v in rhythm_s.most_common()},
    }
    return {"folder": str(folder), "scheme": cfg.labels.scheme, "classes": grouping.classes,
            "channels": list(CANONICAL_CHANNELS), "records": rows, "totals": totals}


def _names(names: list[str], limit: int = 7) -> str:
    if not names:
        return "-"
    return " ".join(names[:limit]) + (f" +{len(names) - limit}" if len(names) > limit else "")


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def inspect_command(cfg: Config, *, folder: Path, as_json: bool, json_path: Path | None = None) -> None:
    """Print the folder summary as a rich table (or JSON, or write the JSON to ``json_path``); exit 1 when
    some record could not be read."""
    doc = inspect_folder(cfg, Path(folder))
    if json_path is not None:
        json_path = Path(json_path)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = json_path.with_name(json_path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        tmp.replace(json_path)
        print(f"wrote {json_path}", file=sys.stderr)
    elif as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"{doc['folder']} ({doc['scheme']} grouping)", show_lines=False)
        for col in ("record", "layout", "duration", "fs", "ch", "missing", "clipped %", "flat", "reference"):
            t.add_column(col, overflow="fold")
        for r in doc["records"]:
            if "error" in r:
                t.add_row(r["record"], "[red]error[/red]", "", "", "", "", "", "", f"[red]{r['error']}[/red]")
                continue
            t.add_row(r["record"], str(r["layout"] or "-"), _hms(r["duration_s"]), f"{r['fs']:g}",
                      f"{r['channels_present']}/{r['channels_total']}", _names(r["missing"]),
                      " ".join(f"{c} {p:.2f}" for c, p in r["clipped"].items()) or "-",
                      " ".join(r["flat"]) or "-", _reference_cell(r))
        console = Console(width=160)
        console.print(t)
        for line in _totals_lines(doc["totals"]):
            console.print(line, highlight=False)
    bad = [r for r in doc["records"] if "error" in r]
    if bad:
        raise RecordError(str(folder), f"{len(bad)} of {len(doc['records'])} records could not be read "
                                       f"(first: {bad[0]['error']})")


def _reference_cell(r: dict[str, Any]) -> str:
    """The table's reference column: rhythm durations (rhythm annotations) or beat class counts."""
    if r["truth_source"] == "rhythm":
        parts = [f"{k} {_hms(v)}" for k, v in r["rhythm_s"].items() if v > 0]
        return "rhythm: " + (", ".join(parts) or "-") + f" ({r['rhythm_map']})"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(r["class_counts"].items(), key=lambda kv: -kv[1]) if v)
    return ("beats: " + counts) if counts else ("-" if r["annotated"] else "no .atr")


def _totals_lines(tot: dict[str, Any]) -> list[str]:
    """The summary under the table: records, layouts (or the channel sets of other records), the
    beat class counts, and the rhythm totals of the records that have rhythm annotations."""
    where = []
    if tot["layouts"]:
        where.append("Leipzig layouts " + ", ".join(f"{k} x{v}" for k, v in tot["layouts"].items()))
    if tot["channel_sets"]:
        n = sum(tot["channel_sets"].values())
        where.append(f"{n} in no Leipzig layout, by channels present: "
                     + ", ".join(f"{k} x{v}" for k, v in tot["channel_sets"].items()))
    lines = [f"{tot['readable']}/{tot['records']} records, {_hms(tot['duration_s'])} in all; " + "; ".join(where)
             + f"; beat labels, {tot['classes_seen']} classes: "
             + ", ".join(f"{k} {v}" for k, v in tot["class_counts"].items() if v)]
    src = tot["truth_sources"]
    if src:
        line = "reference: " + ", ".join(f"{k} x{v}" for k, v in src.items())
        if tot["rhythm_s"]:
            line += "; rhythm " + ", ".join(f"{k} {_hms(v)}" for k, v in tot["rhythm_s"].items() if v > 0)
        lines.append(line)
    return lines


# ------------------------------------------------------------------------------------------- labels
def is_child_record(patient_id: str) -> bool:
    """Leipzig naming: children x001..x0029, adults x100..x109."""
    digits = patient_id.strip().lstrip("xX")
    return digits.isdigit() and int(digits) < 100


def label_table_counts(cfg: Config, table: Path, *, subjects: str = "children") -> dict[str, Any]:
    """Class counts of ``processed_segments_with_aux.csv`` after grouping.

    Returns ``{"scheme", "subjects", "n_subjects", "rows": [{class, count, share, subjects, pairs}],
    "ignored": {pair: count}, "labelled": n}`` with rows sorted by count (the long tail last).
    """
    try:
        text = Path(table).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise AnnotationError(str(table), f"cannot read: {exc.strerror or exc}") from exc
    reader = csv.DictReader(text.splitlines())
    cols = [c.strip() for c in (reader.fieldnames or [])]
    missing = [c for c in TABLE_COLUMNS if c not in cols]
    if missing:
        raise AnnotationError(str(table), f"missing column(s) {missing}; expected {', '.join(TABLE_COLUMNS)}")
    grouping = LabelGrouping.from_config(cfg)
    counts: Counter[int] = Counter()
    pairs: dict[int, Counter[str]] = defaultdict(Counter)
    who: dict[int, set[str]] = defaultdict(set)
    ignored: Counter[str] = Counter()
    patients: set[str] = set()
    for row in reader:
        pid = (row.get("patient_id") or "").strip()
        child = is_child_record(pid)
        if (subjects == "children" and not child) or (subjects == "adults" and child):
            continue
        patients.add(pid)
        sym, aux = (row.get("label_symbol") or "").strip(), (row.get("dataset_aux_string") or "").strip()
        pair = f"{sym}:{aux}" if aux else sym
        k = grouping.label(sym, aux)
        if k is None:
            ignored[pair] += 1
            continue
        counts[k] += 1
        pairs[k][pair] += 1
        who[k].add(pid)
    total = sum(counts.values())
    rows = [{"class": grouping.classes[k], "count": int(counts.get(k, 0)),
             "share": (counts.get(k, 0) / total if total else 0.0), "subjects": len(who.get(k, ())),
             "pairs": dict(pairs[k].most_common())} for k in range(grouping.n_classes)]
    rows.sort(key=lambda r: -r["count"])
    return {"scheme": cfg.labels.scheme, "subjects": subjects, "n_subjects": len(patients), "rows": rows,
            "labelled": total, "ignored": dict(ignored.most_common())}


def _pairs_text(pairs: dict[str, int], limit: int = 4) -> str:
    items = list(pairs.items())
    text = ", ".join(f"`{p}` {n}" for p, n in items[:limit])
    return text + (f", +{len(items) - limit} more" if len(items) > limit else "")


def labels_command(cfg: Config, *, table: Path, subjects: str, markdown: bool) -> None:
    """Print the class counts of a Leipzig annotation table (Markdown for the README, or a rich table)."""
    doc = label_table_counts(cfg, Path(table), subjects=subjects)
    if doc["n_subjects"] == 0:
        raise AnnotationError(str(table), f"no rows for subjects = {subjects}")
    ign = sum(doc["ignored"].values())
    ign_text = ", ".join(f"{p} {n}" for p, n in doc["ignored"].items())
    if markdown:
        out = [f"| class | beats | share | subjects (of {doc['n_subjects']}) | (symbol:aux) pairs |",
               "|---|---:|---:|---:|---|"]
        for r in doc["rows"]:
            out.append(f"| {r['class']} | {r['count']} | {100 * r['share']:.2f} % | {r['subjects']} | "
                       f"{_pairs_text(r['pairs']) or '-'} |")
        out.append(f"| **labelled** | **{doc['labelled']}** | 100 % | | |")
        out.append("")
        out.append(f"Grouping `{doc['scheme']}`, {doc['subjects']}; not labelled (ignore list): {ign} "
                   f"({ign_text}).")
        sys.stdout.write("\n".join(out) + "\n")
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{Path(table).name}: {doc['subjects']} ({doc['n_subjects']}), grouping {doc['scheme']}")
    for col, just in (("class", "left"), ("beats", "right"), ("share", "right"), ("subjects", "right"),
                      ("pairs", "left")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    for r in doc["rows"]:
        t.add_row(r["class"], str(r["count"]), f"{100 * r['share']:.2f} %", str(r["subjects"]),
                  _pairs_text(r["pairs"]).replace("`", ""))
    console = Console(width=160)
    console.print(t)
    console.print(f"labelled {doc['labelled']}; ignored {ign} ({ign_text})")
