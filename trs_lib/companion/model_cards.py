"""Model cards of the zoo, in RobustBench's field names, generated from the records.

One JSON per zoo entry, ``<name>-seed<k>.card.json`` beside its weights: ``name``,
``architecture``, ``dataset``, ``threat_model`` and ``eps`` (L-inf, 0.15: the budget the grid's
worst case runs at), ``clean_acc``, ``worst_case_acc`` (RobustBench's ``autoattack_acc``
replaced by this companion's per-sample worst case, its attacks named in
``worst_case_suite``), ``number_forward_passes`` (one per member), ``reported`` (the paper's
number for the column at that budget, PGD-10, where it prints one: the paper's attack, not a
worst case), ``unreliable`` (an adaptive-audit check failed: the paper's attack overstates this model's
robustness, as RobustBench flags an evaluation it cannot trust), and where each number comes from.
"""
from __future__ import annotations

import math
from pathlib import Path

from . import grid as G
from .. import paper_numbers as P
from ..atomic import atomic_write_json, read_json
from ..records import cell_record, load_records

__all__ = ["CARD_FIELDS", "EPS", "card", "check_card", "card_path", "write_cards", "read_card"]

EPS = 0.15
CARD_FIELDS = {"name": str, "architecture": str, "dataset": str, "threat_model": str, "eps": float,
               "clean_acc": float, "worst_case_acc": (float, type(None)), "worst_case_suite": list,
               "number_forward_passes": int, "reported": (float, type(None)), "reported_source": str,
               "unreliable": bool, "audit": str, "seed": int, "rung": str, "epochs": int,
               "records": dict}


def card_path(entry: dict, folder) -> Path:
    """``<folder>/<weights stem>.card.json``."""
    return Path(folder) / (Path(entry["weights"]).stem + ".card.json")


def _cells(column, seed, rung):
    """The evaluation cells of ``column`` at ``seed`` over the tables that hold it."""
    for target in ("1", "3", "5"):
        if seed in G.seeds_for(target, rung, column):
            yield from ((part, ec) for (col, part), ec in G.table_cells(target, rung, seed)["eval"].items()
                        if col == column)


def card(entry: dict, records: dict) -> dict:
    """The card of one zoo index entry, every number read from ``records``."""
    col, seed, rung = entry["column"], int(entry["seed"]), entry["rung"]
    train = records.get(entry["record"].removesuffix(".json"))
    if train is None:
        raise ValueError(f"zoo entry {entry['name']!r}: its training record {entry['record']} is missing")
    wc = audit = None
    for part, ec in _cells(col, seed, rung):
        rec = cell_record(ec, records)
        if rec is None:
            continue
        if part == "worst_case" and wc is None:
            row = next((r for r in rec["metrics"]["rows"] if r["key"] == G.WorstCaseRow(EPS).key), None)
            wc = (row, f"eval/{ec.name}.json") if row else None
        if part == "audit" and audit is None:
            audit = (rec["metrics"].get("checks") or [], f"eval/{ec.name}.json")
    reported, source = None, "the paper prints no number for this column"
    for tid in ("1", "3", "5"):
        tab = P.table(tid)
        if col in tab.columns and tab.value(f"pgd10/eps={EPS:g}", col) is not None:
            reported = float(tab.value(f"pgd10/eps={EPS:g}", col))
            source = f"the paper's Table {tid}, PGD-10 at eps = {EPS:g} (its attack, not a worst case)"
            break
    cfg = train["config"]
    failed = [c["check"] for c in (audit[0] if audit else []) if c.get("status") == "FAIL"]
    return {"name": f"{entry['name']}-seed{seed}", "architecture": f"{cfg['num_models']} x {cfg['arch']}",
            "dataset": entry["dataset"], "threat_model": "Linf", "eps": EPS,
            "clean_acc": round(100 * float(entry["clean_accuracy"]), 2),
            "worst_case_acc": None if wc is None else round(100 * float(wc[0]["accuracy"]), 2),
            "worst_case_suite": [] if wc is None else list(wc[0]["suite_attacks"]),
            "number_forward_passes": int(cfg["num_models"]),
            "reported": reported, "reported_source": source,
            "unreliable": bool(failed),
            "audit": ("not run" if audit is None else ("FAIL: " + ", ".join(failed)) if failed else "pass"),
            "seed": seed, "rung": rung, "epochs": int(cfg["epochs"]),
            "records": {"train": entry["record"], "clean": entry["eval_record"],
                        "worst_case": None if wc is None else wc[1], "audit": None if audit is None else audit[1]}}


def check_card(c: dict) -> dict:
    """Raise ``ValueError`` naming the first field that is missing or of the wrong type (or a
    percentage outside [0, 100]); returns the card."""
    for k, typ in CARD_FIELDS.items():
        if k not in c:
            raise ValueError(f"model card {c.get('name')!r}: field {k!r} is missing")
        if not isinstance(c[k], typ) or isinstance(c[k], bool) and typ is not bool:
            raise ValueError(f"model card {c.get('name')!r}: {k} = {c[k]!r} is not {typ}")
    for k in ("clean_acc", "worst_case_acc", "reported"):
        if c[k] is not None and not (math.isfinite(c[k]) and 0 <= c[k] <= 100):
            raise ValueError(f"model card {c['name']!r}: {k} = {c[k]!r} is not a percentage")
    return c


def write_cards(entries, folder, records=None) -> list[Path]:
    """Write the card of every zoo entry beside its weights; returns the paths."""
    records = load_records() if records is None else records
    return [atomic_write_json(card_path(e, folder), check_card(card(e, records)), checksum=True)
            for e in entries]


def read_card(entry: dict, folder) -> dict:
    """The committed card of a zoo entry, checked."""
    return check_card(read_json(card_path(entry, folder)))
