"""Which MIT-BIH AF and VT episodes the rhythm-context model misses, and why (record-wise CV).

The out-of-fold probabilities are those of ``bench/rhythm_context_cv.py --context 30 --weights balanced``
(same folds, same fits: record-wise 5-fold over the 48 MIT-BIH + vfdb records, trained on all CinC 2017 +
the other folds' records), scored through the engine's alarm logic. For every MIT-BIH AF and VT episode
the model misses (the VT fast path of the alarm logic off: ``bench/rhythm_context_vt.py`` measures it):
its record, onset and duration, the annotated beats in it (VT: ventricular beats and
their rate), what the model called during it (most frequent call, the largest probability of the
episode's class and the longest run of calls at or above ``onset_p`` against the ``onset_calls`` the
alarm needs) and what the RR-irregularity rule said (share of its calls that were AF, whether its
alarm found the episode). Calls are those at hops ending inside the episode or up to two hops after it.

    nice -n 10 .venv/bin/python bench/rhythm_context_misses.py

Writes bench/results/rhythm_context/misses.{json,md}; the out-of-fold probabilities are cached under
``<cache>/rhythm_context/oof`` (reused by ``bench/rhythm_context_vt.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
OUT = ROOT / "bench" / "results" / "rhythm_context"
COMMAND = "nice -n 10 .venv/bin/python bench/rhythm_context_misses.py"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def baseline_oof(data, cfg, cache: Path, ctx: float = 30.0, wmode: str = "balanced", features: str = "model",
                 cinc: bool = False) -> dict[str, np.ndarray]:
    """Out-of-fold probabilities ``{"rec": ..., "cinc": ...}`` of ``bench/rhythm_context_cv.py``'s folds at one
    setting (cached by :func:`rhythm_context_cv.run_cv_cached`; ``cinc``: the CinC 5-fold CV too)."""
    import rhythm_context_cv as cv

    r = cv.run_cv_cached(data, cfg, ctx, wmode, cache, features=features, cinc_cv=cinc)
    return {"rec": r["_p_rec"]} | ({"cinc": r["_p_cinc"]} if cinc else {})


def _longest_run(mask: np.ndarray) -> int:
    best = run = 0
    for v in mask.tolist():
        run = run + 1 if v else 0
        best = max(best, run)
    return best


def analyse(recs, probs, spans, cfg, shared: Path, hop_s: float, cfg_fast=None) -> dict:
    """Per MIT-BIH AF / VT episode: detected by the model / the rule, and the calls during it."""
    from pedstream.data.rhythm_sources import annotated_beats
    from pedstream.dsp.rhythm_features import CONTEXT_FEATURES
    from pedstream.score.episodes import Span, score_record
    from pedstream.train.rhythm_context import alarm_inputs, record_calls, rule_probs, run_columns
    from pedstream.train.rhythm_context_data import CLASSES

    since, flat = CONTEXT_FEATURES.index("since_last_s"), CONTEXT_FEATURES.index("flat_frac")
    rc = cfg.rhythm_context
    out: list[dict] = []
    names = [r for r in dict.fromkeys(recs["record"].tolist()) if r.startswith("mitdb:")]
    for r in names:
        i = np.flatnonzero(recs["record"] == r)
        t, X, p = recs["t"][i], recs["X"][i], probs[i]
        readable = X[:, flat] < 0.95
        rp = rule_probs(recs["rule_af"][i])
        eps_m = record_calls(t, p, X[:, since], readable, cfg, hop_s=hop_s)
        eps_r = record_calls(t, rp, X[:, since], readable, cfg, hop_s=hop_s)
        eps_f = [] if cfg_fast is None else record_calls(t, p, X[:, since], readable, cfg_fast, hop_s=hop_s,
                                                         runs=run_columns(recs, i, cfg_fast),
                                                         extra=alarm_inputs(recs, i, cfg_fast))  # its gates too
        bt, sym = annotated_beats(shared / "mitdb" / r.split(":", 1)[1])
        sym = np.asarray(sym)
        for s0, s1, lab in spans[r]:
            if lab not in ("af_afl", "vt") or s1 <= t[0] or s0 >= t[-1]:
                continue
            k = CLASSES.index(lab)
            ref = [Span(s0, s1, lab)]
            det_m = score_record(ref, [e for e in eps_m if e.label == lab], [lab], start_s=float(t[0]),
                                 end_s=float(t[-1])).classes[lab].detected > 0
            det_r = (score_record(ref, [e for e in eps_r if e.label == lab], [lab], start_s=float(t[0]),
                                  end_s=float(t[-1])).classes[lab].detected > 0) if lab == "af_afl" else None
            det_f = (score_record(ref, [e for e in eps_f if e.label == lab], [lab], start_s=float(t[0]),
                                  end_s=float(t[-1])).classes[lab].detected > 0) if lab == "vt" and cfg_fast else None
            m = (t > s0) & (t <= s1 + 2 * hop_s)
            calls = p[m].argmax(1)
            top = np.bincount(calls, minlength=len(CLASSES))
            order = np.argsort(-top)
            called = ", ".join(f"{CLASSES[c]} {top[c] / max(1, calls.size):.0%}" for c in order[:2] if top[c])
            inb = (bt >= s0) & (bt < s1)
            vb = inb & np.isin(sym, ["V", "F", "E", "!"])
            vt_rate = (60.0 * (vb.sum() - 1) / (bt[vb][-1] - bt[vb][0])) if vb.sum() >= 2 else None
            out.append({"record": r.split(":", 1)[1], "class": lab, "start_s": round(float(s0), 1),
                        "duration_s": round(float(s1 - s0), 1), "beats": int(inb.sum()),
                        "ventricular_beats": int(vb.sum()),
                        "ventricular_rate_bpm": None if vt_rate is None else round(float(vt_rate)),
                        "calls": int(m.sum()), "called": called or "-",
                        "max_p": round(float(p[m, k].max()), 3) if m.any() else None,
                        "run_at_onset_p": _longest_run(p[m, k] >= rc.onset_p),
                        "onset_calls": int(rc.onset_calls.get(lab, 3)),
                        "model_detected": bool(det_m),
                        "rule_af_frac": round(float(recs["rule_af"][i][m].mean()), 2) if m.any() else None,
                        "rule_detected": det_r, "fast_path_detected": det_f})
    return {"episodes": out}


def summary(res: dict, hop_s: float, onset: dict) -> dict:
    eps = res["episodes"]
    s: dict = {}
    for lab in ("af_afl", "vt"):
        a = [e for e in eps if e["class"] == lab]
        miss = [e for e in a if not e["model_detected"]]
        hit = [e for e in a if e["model_detected"]]
        need = onset.get(lab, 3) * hop_s
        d_m = np.asarray([e["duration_s"] for e in miss])
        d_h = np.asarray([e["duration_s"] for e in hit])
        s[lab] = {"episodes": len(a), "missed": len(miss), "onset_needs_s": need,
                  "missed_shorter_than_onset": int(np.sum(d_m < need)),
                  "missed_shorter_than_15s": int(np.sum(d_m < 15)), "missed_shorter_than_30s": int(np.sum(d_m < 30)),
                  "missed_median_s": round(float(np.median(d_m)), 1) if d_m.size else None,
                  "detected_median_s": round(float(np.median(d_h)), 1) if d_h.size else None,
                  "detected_shorter_than_onset": int(np.sum(d_h < need)),
                  "missed_reference_s": round(float(d_m.sum()), 1), "all_reference_s": round(float(d_m.sum() + d_h.sum()), 1),
                  "missed_never_at_onset_p": int(sum(1 for e in miss if e["run_at_onset_p"] == 0)),
                  "missed_run_short_of_onset": int(sum(1 for e in miss if 0 < e["run_at_onset_p"] < e["onset_calls"])),
                  "missed_found_by_rule": int(sum(1 for e in miss if e["rule_detected"]))}
        if lab == "vt":
            if any(e.get("fast_path_detected") is not None for e in a):
                s[lab]["found_by_fast_path"] = int(sum(1 for e in a if e.get("fast_path_detected")))
                s[lab]["missed_found_by_fast_path"] = int(sum(1 for e in miss if e.get("fast_path_detected")))
            vb = np.asarray([e["ventricular_beats"] for e in a])
            s[lab]["ventricular_beats_median"] = float(np.median(vb)) if vb.size else None
            s[lab]["episodes_le_5_beats"] = int(np.sum(vb <= 5))
            s[lab]["episodes_shorter_than_hop"] = int(sum(1 for e in a if e["duration_s"] < hop_s))
    return s


def render(res: dict) -> str:
    s = res["summary"]
    L = ["# Rhythm-context model: the MIT-BIH AF and VT episodes it misses (record-wise CV)", "",
         f"Command: `{res['command']}`. Out-of-fold probabilities of `bench/rhythm_context_cv.py --context 30 "
         "--weights balanced` (same folds and fits), through the engine's alarm logic without the VT fast path and its beat-run confirmation of VT "
         f"(hop {res['hop_s']} s; onset: {res['onset_calls']} consecutive calls with p >= {res['onset_p']}). "
         "\"called\": the two most frequent model calls at hops ending in the episode or up to two hops after it; "
         "\"max p\": the largest probability of the episode's class there; \"run\": the longest run of those calls "
         "at p >= onset_p, against the calls the alarm needs; \"rule AF\": share of the RR rule's calls that were AF.", ""]
    a, v = s["af_afl"], s["vt"]
    L += ["## Summary", "",
          f"- AF: {a['missed']} of {a['episodes']} episodes missed; median duration {a['missed_median_s']} s "
          f"(found episodes: {a['detected_median_s']} s). {a['missed_shorter_than_onset']} missed episodes are "
          f"shorter than the {a['onset_needs_s']:g} s of calls the onset needs, {a['missed_shorter_than_15s']} shorter "
          f"than 15 s, {a['missed_shorter_than_30s']} shorter than the 30 s context "
          f"({a['detected_shorter_than_onset']} found episodes are shorter than {a['onset_needs_s']:g} s). "
          f"Missed AF time: {a['missed_reference_s']} s of {a['all_reference_s']} s. "
          f"In {a['missed_never_at_onset_p']} missed episodes the model never reached p >= onset_p for AF; in "
          f"{a['missed_run_short_of_onset']} it did, but for fewer consecutive calls than the onset needs. "
          f"The RR rule's alarm found {a['missed_found_by_rule']} of the missed episodes.",
          f"- VT: {v['missed']} of {v['episodes']} episodes missed; median {v['ventricular_beats_median']:g} "
          f"ventricular beats per episode, {v['episodes_le_5_beats']} episodes of 5 beats or fewer, "
          f"{v['episodes_shorter_than_hop']} shorter than one hop ({res['hop_s']} s); median duration of the missed "
          f"ones {v['missed_median_s']} s. In {v['missed_never_at_onset_p']} missed episodes p(vt) never reached "
          f"onset_p." + (f" With the alarm logic's VT fast path ({res['fast_path']['vt_run_beats']} beats, correlation < "
                         f"{res['fast_path']['vt_run_corr']:g}, mean rate >= {res['fast_path']['vt_run_min_rate_bpm']:g} bpm, "
                         f"p(artefact) < {res['fast_path']['vt_run_max_artefact_p']:g}; and the model's VT confirmed by a "
                         f"run of {res['fast_path'].get('vt_confirm_run', 0)} beats unless p(vt) > "
                         f"{res['fast_path'].get('vt_confirm_max_p', 1.0):g}) "
                         f"{v['found_by_fast_path']} of the {v['episodes']} are found "
                         f"({v['missed_found_by_fast_path']} of the model's misses)." if v.get("found_by_fast_path") is not None else ""),
          ""]
    for lab, title in (("af_afl", "AF episodes"), ("vt", "VT episodes")):
        rows = [e for e in res["episodes"] if e["class"] == lab]
        L += [f"## {title} (missed first)", "",
              "| record | onset s | duration s | beats | V beats (rate bpm) | model found | called | max p | run / needed | "
              "rule AF | rule found | VT fast path found |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for e in sorted(rows, key=lambda e: (e["model_detected"], e["record"], e["start_s"])):
            rate = "" if e["ventricular_rate_bpm"] is None else f" ({e['ventricular_rate_bpm']})"
            rule = "-" if e["rule_detected"] is None else ("yes" if e["rule_detected"] else "no")
            fd = e.get("fast_path_detected")
            fast = "-" if fd is None else ("yes" if fd else "no")
            L.append(f"| {e['record']} | {e['start_s']} | {e['duration_s']} | {e['beats']} | {e['ventricular_beats']}{rate} | "
                     f"{'yes' if e['model_detected'] else '**no**'} | {e['called']} | {e['max_p']} | "
                     f"{e['run_at_onset_p']} / {e['onset_calls']} | {e['rule_af_frac']} | {rule} | {fast} |")
        L.append("")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    import rhythm_context_cv as cv

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=None, help="feature cache (default ~/.cache/pedstream)")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    from pedstream.config import load_config
    from pedstream.data.cinc2017 import default_cache
    from pedstream.train.rhythm_tables import merge

    cfg = load_config(overrides=["rhythm_context.vt_run_beats=0", "rhythm_context.vt_confirm_run=0"])  # the model's own
    # calls: the VT fast path and the beat-run confirmation of the model's VT off
    cache = Path(a.cache) if a.cache else default_cache()
    data = cv.load(cfg, cache)
    probs = baseline_oof(data, cfg, cache, cinc=True)["rec"]
    recs = merge([data["mitdb"], data["vfdb"]], 30.0)
    spans = cv.spans_of(cfg)
    res = {"command": COMMAND, "hop_s": cv.HOP_S, "onset_p": cfg.rhythm_context.onset_p,
           "onset_calls": dict(cfg.rhythm_context.onset_calls)}
    fast = load_config()  # the alarm logic as shipped: the VT fast path on
    res |= analyse(recs, probs, spans, cfg, cv.SHARED, cv.HOP_S, fast if fast.rhythm_context.vt_run_beats else None)
    rc = fast.rhythm_context
    res["fast_path"] = {"vt_run_beats": rc.vt_run_beats, "vt_run_corr": rc.vt_run_corr,
                        "vt_run_min_rate_bpm": rc.vt_run_min_rate_bpm, "vt_run_max_artefact_p": rc.vt_run_max_artefact_p,
                        "vt_confirm_run": rc.vt_confirm_run, "vt_confirm_max_p": rc.vt_confirm_max_p}
    res["summary"] = summary(res, cv.HOP_S, dict(cfg.rhythm_context.onset_calls))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "misses.json").write_text(json.dumps(res, indent=1), encoding="utf-8")
    (out / "misses.md").write_text(render(res), encoding="utf-8")
    print(render(res))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.exit(main())
