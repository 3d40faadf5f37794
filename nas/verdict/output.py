"""The verdict as a terminal table, CSV and JSON files, a study attribute and an artifact.

Tables are computed by pure functions (``table_rows``, ``quick_rows``) shared by the
terminal, the CSV files and the ``nas report`` section.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any, Sequence

from nas._io import atomic_write_text, json_safe

__all__ = ["STUDY_ATTR", "attach", "format_quick", "format_table", "quick_rows", "table_rows",
           "write_files"]

STUDY_ATTR = "verdict"  # study user attribute holding the latest verdict (compact)


def _num(x: float, quality: bool) -> str:
    if x is None or not math.isfinite(x):
        return "?"
    return f"{x:+.2f}" if quality else f"{x:+.3g}"


def effect_text(e: dict[str, Any], quality: bool, base: float | None = None) -> str:
    """``+6.02 [+4.10, +7.93]`` (90 % interval), ``+0.098 (exact)`` when it is the same for
    every seed; costs also relative to the base (``+25%``, or ``x3000`` from twice on);
    ``-`` when nothing was measured."""
    if not e or e.get("n", 0) == 0 or e.get("mean") is None:
        return "-"
    lo, hi = e.get("lo"), e.get("hi")
    txt = _num(e["mean"], quality)
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        txt += " [n<2]"
    elif _num(lo, quality) == _num(hi, quality):
        txt += " (exact)"
    else:
        txt += f" [{_num(lo, quality)}, {_num(hi, quality)}]"
    if not quality and base and math.isfinite(base) and base > 0 and e["mean"]:
        ratio = (base + e["mean"]) / base
        txt += (f" {100 * (ratio - 1):+.0f}%" if ratio < 2 else
                f" x{ratio:.3g}" if ratio < 1000 else f" x{ratio:.0f}")
    return txt


def _label(row: dict[str, Any]) -> str:
    return f"{row['plan']} {row['variant']}" if row.get("plan") else row["variant"]


def table_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the verdict table (paired evidence)."""
    objs = doc["objectives"]
    head = ["variant", "tested as", "seeds",
            *(f"{o['name']} effect [{doc['level']:.0%}]" for o in objs), "verdict"]
    rows = []
    for r in doc.get("rows", []):
        cells = [_label(r), r["action"] or "-", str(r["n"])]
        for o in objs:
            cells.append(effect_text(r["effects"].get(o["name"], {}), o["kind"] == "quality",
                                     (r.get("base") or {}).get(o["name"])))
        cells.append(r["word"])
        rows.append(cells)
    return head, rows


def quick_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the quick estimate (no training; observational)."""
    objs = doc["objectives"]
    head = ["variant", "trials on", "trials off",
            *(f"{o['name']} on - off [{doc['level']:.0%}]" for o in objs)]
    rows = []
    for r in doc["quick_estimate"]["rows"]:
        rows.append([_label(r), str(r["n_on"]), str(r["n_off"]),
                     *(effect_text(r["effects"][o["name"]], o["kind"] == "quality")
                       for o in objs)])
    return head, rows


def _grid(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    w = [max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i])
         for i in range(len(head))]
    line = lambda cells: "  ".join(c.ljust(x) for c, x in zip(cells, w)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * x for x in w]), *(line(r) for r in rows)])


def format_quick(doc: dict[str, Any]) -> str:
    q = doc["quick_estimate"]
    return (f"Quick estimate (no training): the study's {q['n_trials']} full-budget trials "
            "with each variant on against off. Observational, confounded by everything else "
            "that varies between trials; not a verdict.\n" + _grid(*quick_rows(doc)))


def format_table(doc: dict[str, Any]) -> str:
    """The verdict table with a header line and the reasons of untested variants."""
    p = doc["point"]
    vals = ", ".join(f"{k}={v:.4g}" for k, v in p["values"].items())
    out = [f"Verdicts around trial {p['trial']} ({p['pick']}; {vals}): paired full-budget "
           f"runs ({doc['epochs']:g} epochs), {doc['seeds']} seeds, effect = variant on - "
           f"off with its {doc['level']:.0%} t-interval over seeds.",
           _grid(*table_rows(doc))]
    notes = [f"  {_label(r)}: {r['reason']}" for r in doc.get("rows", []) if r.get("reason")]
    if notes:
        out.append("not tested / incomplete:\n" + "\n".join(notes))
    return "\n".join(out)


def _csv(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    w.writerows(rows)
    return buf.getvalue()


def _flat(doc: dict[str, Any], rows: Sequence[dict[str, Any]], quick: bool
          ) -> tuple[list[str], list[list[Any]]]:
    objs = [o["name"] for o in doc["objectives"]]
    lead = ["variant", "plan", "n_on", "n_off"] if quick else \
        ["variant", "plan", "action", "n", "verdict", "reason", "fusion_id"]
    head = lead + [f"{o}_{k}" for o in objs for k in
                   (("effect", "lo", "hi") if quick else ("effect", "lo", "hi", "base"))]
    out = []
    for r in rows:
        cells = ([r["variant"], r["plan"], r["n_on"], r["n_off"]] if quick else
                 [r["variant"], r["plan"], r["action"], r["n"], r["word"], r["reason"],
                  r["fusion_id"]])
        for o in objs:
            e = r["effects"][o]
            cells += [e["mean"], e["lo"], e["hi"]]
            if not quick:
                cells.append(r["base"][o])
        out.append(cells)
    return head, out


def write_files(doc: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """``verdict.json`` (everything), ``verdict.csv`` (one row per variant, paired
    evidence; absent for --quick) and ``quick_estimate.csv``, each written atomically."""
    out = Path(out_dir)
    paths = []
    if "rows" in doc:
        p = out / "verdict.csv"
        atomic_write_text(p, _csv(*_flat(doc, doc["rows"], quick=False)))
        paths.append(p)
    p = out / "quick_estimate.csv"
    atomic_write_text(p, _csv(*_flat(doc, doc["quick_estimate"]["rows"], quick=True)))
    paths.append(p)
    p = out / "verdict.json"
    atomic_write_text(p, json.dumps(json_safe(doc), indent=2) + "\n")
    paths.append(p)
    return paths


def attach(study: Any, doc: dict[str, Any], storage_url: str) -> str | None:
    """Store the verdict on the study so optuna-dashboard shows it: the user attribute
    ``verdict`` (the whole document) and the CSV as a study artifact
    ``verdict-trial-<N>.csv`` in the artifact folder beside the storage. Returns the
    artifact name (None for a quick-only document, which is stored as ``verdict_quick``)."""
    from optuna.artifacts import upload_artifact

    from nas.dashboard import artifact_dir_for, open_artifact_store

    if "rows" not in doc:
        study.set_user_attr(STUDY_ATTR + "_quick", json_safe(doc))
        return None
    study.set_user_attr(STUDY_ATTR, json_safe(doc))
    name = f"verdict-trial-{doc['point']['trial']}.csv"
    store = open_artifact_store(artifact_dir_for(storage_url))
    with tempfile.TemporaryDirectory(prefix="nas-verdict-") as tmp:
        path = Path(tmp) / name
        path.write_text(_csv(*table_rows(doc)))
        upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study,
                        mimetype="text/csv")
    return name
