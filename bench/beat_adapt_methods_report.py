"""The tables of bench/beat_adapt_methods.py: the nested choice, the error analysis and the Markdown page."""

from __future__ import annotations

from typing import Any

import numpy as np

REFERENCE = "knn k=1 mix=0.8, labelled classes, premature 0.65/0.8"  # the eval's most chosen at 5 minutes


def nested(per_record: list[dict[str, np.ndarray]], settings: list[str]) -> tuple[np.ndarray, list[str]]:
    """The pooled confusion with each record's setting chosen on the other records (adapt_eval's rule)."""
    from pedstream.train.adapt_eval import ectopy_scores

    total, chosen = np.zeros((5, 4), dtype=np.int64), []
    for i in range(len(per_record)):
        def score(s: str) -> float:
            e = ectopy_scores(sum(c[s] for j, c in enumerate(per_record) if j != i))
            return 0.5 * (e["SVEB"]["F1"] + e["VEB"]["F1"])
        best = max(settings, key=score)  # the first of ties, in grid order
        chosen.append(best)
        total += per_record[i][best]
    return total, chosen


def error_rows(recs: list[Any], calls: list[np.ndarray]) -> list[dict[str, Any]]:
    from pedstream.train.adapt_eval import beat_confusion

    rows = []
    for rec, call in zip(recs, calls):
        c = beat_confusion(rec.y, call)
        rows.append({"record": rec.name, "labels N/S/V/F": np.bincount(rec.yl[(rec.yl >= 0) & (rec.yl < 4)],
                                                                         minlength=4).tolist(),
                     "S": int(c[1].sum()), "S->N": int(c[1, 0]), "S->V": int(c[1, 2]), "N->S": int(c[0, 1]),
                     "V": int(c[2].sum()), "V->N": int(c[2, 0]), "V->S": int(c[2, 1]), "V->F": int(c[2, 3]),
                     "N->V": int(c[0, 2]), "S->V/F->V": int(c[1, 2] + c[3, 2])})
    return rows


def _cell(s: dict[str, Any]) -> str:
    return (f"{s['SVEB']['F1']:.3f} ({s['SVEB']['Se']:.3f}/{s['SVEB']['+P']:.3f}) / "
            f"{s['VEB']['F1']:.3f} ({s['VEB']['Se']:.3f}/{s['VEB']['+P']:.3f})")


def markdown(doc: dict[str, Any]) -> str:
    res, budgets = doc["results"], list(doc["results"])
    fams = list(res[budgets[0]])
    fams.remove("errors")
    md = ["# Stronger patient-specific methods: record-wise CV inside MIT-BIH DS1", "",
          f"Made with `{doc['command']}` ({doc['written']}, {doc['seconds']:.0f} s on one core).", "",
          "Population model: `HGB, part 2 without raw morphology` (11 record-wise folds, the fold model of each record "
          "never saw it); labels from each record's first 5 minutes; scored: its beats after 5 minutes, gross "
          "statistics over the 22 records. Each family is the eval's grid (`pedstream eval --adapt-minutes 5`, "
          "adapt_eval.METHODS) plus its own settings, one setting chosen per record on the other 21 records "
          "(nested); `reference` is the grid alone (as bench/results/beat_cv/adapt_eval.md). The families: "
          "bench/beat_adapt_methods.py.", "",
          "Cells: SVEB F1 (Se/+P) / VEB F1 (Se/+P), nested choice; in brackets after the family, at 5 minutes: "
          "the records that chose one of the family's own settings.", "",
          "| family | " + " | ".join(budgets) + " |", "|---|" + "---|" * len(budgets)]
    for f in fams:
        md.append(f"| {f} [{res[budgets[0]][f]['own_settings_chosen'] if f in res[budgets[0]] else '-'}] | "
                  + " | ".join(_cell(res[b][f]["nested"]) if f in res[b] else "-" for b in budgets) + " |")
    md += ["", "Each setting fixed for every record (chosen on the same records, so optimistic; SVEB F1 / VEB F1):", "",
           "| family | setting | " + " | ".join(budgets) + " |", "|---|---|" + "---|" * len(budgets)]
    for f in fams:
        for k in res[budgets[0]][f]["fixed"]:
            md.append(f"| {f} | {k} | " + " | ".join(
                f"{res[b][f]['fixed'][k]['SVEB']['F1']:.3f} / {res[b][f]['fixed'][k]['VEB']['F1']:.3f}"
                if f in res[b] and k in res[b][f]["fixed"] else "-" for b in budgets) + " |")
    t = doc["fit_seconds"]
    md += ["", "Fit time per label update (one core, median / max over the records and budgets): " + "; ".join(
        f"{k} {v['median'] * 1e3:.1f} / {v['max'] * 1e3:.1f} ms" for k, v in t.items()) + ".", "",
        f"Where the reference setting (`{REFERENCE}`, fixed) loses beats at 5 minutes (scored beats after "
        "5 minutes; records with no S or V error left out):", "",
        "| record | labels N/S/V/F | S | S->N | S->V | N->S | V | V->N | V->S | V->F | N->V | S or F ->V |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res[budgets[0]]["errors"]:
        if r["S->N"] + r["S->V"] + r["N->S"] + r["V->N"] + r["V->S"] + r["V->F"] + r["N->V"] + r["S->V/F->V"]:
            md.append(f"| {r['record']} | {'/'.join(map(str, r['labels N/S/V/F']))} | {r['S']} | {r['S->N']} | "
                      f"{r['S->V']} | {r['N->S']} | {r['V']} | {r['V->N']} | {r['V->S']} | {r['V->F']} | {r['N->V']} | "
                      f"{r['S->V/F->V']} |")
    return "\n".join(md) + "\n"
