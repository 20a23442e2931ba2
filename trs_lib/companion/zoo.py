"""The CPU-scale model zoo: the committed seed-0 weights of every column, one call to load
(RobustBench's ``load_model``), so anyone can attack our ensembles with their own code.

    from trs_lib.companion import zoo
    zoo.available()                        # [("trs", 0), ("adp", 0), ...]
    ensemble, record, card = zoo.load("trs")  # checksum verified; its training's record; its model card

Weights live under ``results/zoo/``: ``<column>-seed<k>.safetensors`` with the sidecar
``<column>-seed<k>.json`` that ``trs_lib.checkpoint.load_weights`` reads (nothing is ever
unpickled), and ``index.json`` listing each entry with the SHA-256 of its weights, its
training's record and the clean accuracy that record's evaluation measured on its test points,
and ``<column>-seed<k>.card.json``, its model card in RobustBench's field names
(:mod:`trs_lib.companion.model_cards`, generated from the records).
The zoo is filled after a regrid by ``python -m trs_lib.companion.zoo build`` (copies the seed-0 weights
of the grid's columns from ``runs/``, at most :data:`MAX_MB` MB in all, in the driver's column
order) and is empty until then.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from . import grid as G
from . import model_cards as MC
from ..atomic import atomic_write_json, read_json, sha256_file
from ..checkpoint import load_weights
from ..paths import display_path, results_dir, runs_dir
from ..records import cell_record, load_records, read_record

__all__ = ["zoo_name", "available", "load", "entries", "build", "zoo_dir",
           "ZooError", "MAX_MB", "INDEX"]

MAX_MB = 40.0
INDEX = "index.json"
FORMAT = "trs-zoo-1"


class ZooError(RuntimeError):
    """A zoo entry that is missing, or whose weights do not match their checksum."""


def zoo_dir(root=None) -> Path:
    """``<results>/zoo`` (``root``: a results folder; default ``results/``)."""
    return Path(root or results_dir()) / "zoo"


def entries(root=None) -> list[dict]:
    """The index's entries (``[]`` for an empty zoo)."""
    path = zoo_dir(root) / INDEX
    if not path.is_file():
        return []
    index = read_json(path)
    if index.get("format") != FORMAT:
        raise ZooError(f"{path}: not a zoo index of format {FORMAT!r}")
    return list(index.get("entries", []))


def zoo_name(column: str, rung: str = "cpu") -> str:
    """An ensemble's name in the zoo: its grid column on rung ``cpu`` (``trs``), else
    ``column@rung`` (``trs@cpu-r20-2ep``, the ResNet-20 pilot's TRS)."""
    return column if rung == "cpu" else f"{column}@{rung}"


def available(root=None) -> list[tuple[str, int]]:
    """``[(name, seed)]`` of every ensemble in the zoo (:func:`zoo_name`; ``[]`` until the
    regrid fills it)."""
    return [(e["name"], int(e["seed"])) for e in entries(root)]


def _entry(name, seed, root) -> dict:
    for e in entries(root):
        if e["name"] == name and int(e["seed"]) == int(seed):
            return e
    have = available(root)
    raise ZooError(f"no ensemble {name!r} with seed {seed} in the zoo; available: "
                   + (str(have) if have else "none (the zoo is empty until the regrid commits "
                                               "weights: python -m trs_lib.companion.zoo build)"))


def load(name: str, seed: int = 0, root=None, device="cpu"):
    """``(ensemble, record, card)`` for an ensemble of the zoo (a column of the grid, e.g. ``"trs"``,
    ``"adp"``, ``"trs_published"``, or ``column@rung``, :func:`zoo_name`): the weights' SHA-256 is checked against the index
    before loading, ``record`` is its training's record with ``zoo`` (the index entry: clean accuracy, test
    points, evaluation record) added, ``card`` its model card (:mod:`trs_lib.companion.model_cards`)."""
    e = _entry(name, seed, root)
    folder = zoo_dir(root)
    st = folder / e["weights"]
    if not st.is_file():
        raise ZooError(f"{st}: listed in the zoo index but missing")
    got = sha256_file(st)
    if got != e["sha256"]:
        raise ZooError(f"{st}: SHA-256 {got[:16]}... does not match the index's "
                       f"{e['sha256'][:16]}...; the file is corrupt or was replaced")
    ensemble, _ = load_weights(st, device=device)
    record = read_record(folder.parent / e["record"])
    record["zoo"] = dict(e)
    return ensemble, record, MC.read_card(e, folder)


def _clean_from_records(column, seed, rung, records):
    """(clean accuracy, n, eval record key) from the column's evaluations, or Nones."""
    for target in ("1", "3", "5", "fig2"):
        if seed not in G.seeds_for(target, rung):
            continue
        cells = G.table_cells(target, rung, seed)
        for (col, part), ec in cells["eval"].items():
            if col != column or part == "audit":
                continue
            rec = cell_record(ec, records)
            m = (rec or {}).get("metrics", {})
            if m.get("clean_accuracy") is not None and m.get("n_test"):
                return float(m["clean_accuracy"]), int(m["n_test"]), f"eval/{ec.name}.json"
    return None, None, None


def build(rung="cpu", seed: int = 0, columns=None, root=None, max_mb: float = MAX_MB,
          log=print) -> list[dict]:
    """Copy the ``seed`` weights of the grid's columns from ``runs/`` into the zoo, in the
    driver's column order, up to ``max_mb`` MB in all; write the index. A column without a
    training record, weights or a clean accuracy in its evaluation records is left out (and
    said). Returns the index's entries."""
    records = load_records(root)
    columns = list(columns) if columns is not None else [
        c for c in G.PRIORITY if any(c in G.table_columns(t, rung) for t in ("1", "3", "5"))
        or c == "vanilla"]
    folder = zoo_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    out, total = [], 0
    for col in columns:
        ds = G.rung(rung).dataset("mnist")
        tc = G.train_cell(col, ds, rung, seed)
        trec = cell_record(tc, records)
        st, sidecar = runs_dir() / tc.name / "weights.safetensors", runs_dir() / tc.name / "weights.json"
        acc, n, erec = _clean_from_records(col, seed, rung, records)
        why = ("no training record" if trec is None else "no weights in runs/" if not st.is_file()
               else "no evaluation record with a clean accuracy" if acc is None else None)
        if why:
            log(f"  zoo: {col} seed {seed} left out: {why}")
            continue
        size = st.stat().st_size + sidecar.stat().st_size
        if (total + size) / 2**20 > max_mb:
            log(f"  zoo: {col} seed {seed} left out: the zoo would exceed {max_mb:g} MB")
            continue
        name = zoo_name(col, G.rung(rung).name)
        stem = f"{name}-seed{seed}"
        shutil.copyfile(st, folder / f"{stem}.safetensors")
        shutil.copyfile(sidecar, folder / f"{stem}.json")
        total += size
        out.append(dict(name=name, column=col, rung=G.rung(rung).name, seed=seed, train=tc.name,
                        weights=f"{stem}.safetensors", sidecar=f"{stem}.json",
                        sha256=sha256_file(folder / f"{stem}.safetensors"),
                        record=f"train/{tc.name}.json", eval_record=erec, clean_accuracy=acc,
                        n_test=n, dataset=ds, bytes=size))
        log(f"  zoo: {col} seed {seed}: {size / 2**20:.1f} MB, clean accuracy {100 * acc:.1f}%")
    atomic_write_json(folder / INDEX, {"format": FORMAT, "entries": out}, checksum=True)
    MC.write_cards(out, folder, records)
    log(f"zoo: {len(out)} ensembles, {total / 2**20:.1f} MB in {display_path(folder)}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trs_lib.companion.zoo", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["list", "build", "cards"])
    ap.add_argument("--rung", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-mb", type=float, default=MAX_MB)
    args = ap.parse_args(argv)
    if args.command == "build":
        build(args.rung, args.seed, max_mb=args.max_mb)
    if args.command == "cards":  # the model cards of the index's entries, from the records now
        MC.write_cards(entries(), zoo_dir())
    for e in entries():
        print(f"{e['name']:>24s} seed {e['seed']}: clean {100 * e['clean_accuracy']:.1f}% on "
              f"{e['n_test']} points, {e['bytes'] / 2**20:.1f} MB, sha256 {e['sha256'][:12]}")
    if not entries():
        print("the zoo is empty (it is filled after the regrid: python -m trs_lib.companion.zoo build)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
