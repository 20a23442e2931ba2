"""The results store: one JSON record per run, typed, validated and written atomically.

A record is a :class:`TrainRecord` (kind ``train``: a training's config, final metrics and
per-epoch history) or an :class:`EvalRecord` (kind ``eval``: one evaluation suite's config and
its ``rows``, one per attack setting, each with its accuracy, 95% interval and per-point
outcomes), with ``provenance`` (``trs_lib.provenance``: commit, versions, hardware, wall time,
peak memory), the driver's ``grid`` section when the grid made it, and ``schema`` (the record
format's version, :data:`SCHEMA_VERSION`; records written before the field existed are of
version 1, the same shape). Every read goes through :func:`parse_record`, which names the file
and the field that is wrong. A grid cell's record lives at ``results/<kind>/<cell name>.json``
with the executed notebook beside it (``<cell name>.ipynb``); :func:`load_records` reads them all.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from .atomic import CorruptFileError, atomic_write_json, read_json
from .paths import results_dir
from .provenance import provenance

__all__ = ["SCHEMA_VERSION", "RecordError", "Record", "TrainRecord", "EvalRecord", "parse_record",
           "write_record", "read_record", "record_path", "notebook_path", "load_records",
           "cell_record"]

SCHEMA_VERSION = 1
_KINDS = ("train", "eval")
# Folders of the results store that hold no run records (the model zoo's weights and index).
_NOT_RECORDS = ("zoo",)


class RecordError(CorruptFileError):
    """A record whose content is not of its type; the message names the file and the field."""


def _fail(source, where: str, problem: str):
    raise RecordError(f"{source}: {where} {problem}")


def _is_fraction(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1


def _check_provenance(p: dict, source) -> None:
    if not isinstance(p.get("git_commit"), str):
        _fail(source, "provenance.git_commit", f"should be a commit string, got {p.get('git_commit')!r}")
    for k in ("wall_time_s", "peak_memory_mib", "peak_cuda_memory_mib"):
        v = p.get(k)
        if (k == "wall_time_s" or v is not None) and not (
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0):
            _fail(source, f"provenance.{k}", f"should be a non-negative number, got {v!r}")
    for k in ("hardware", "versions"):
        if not isinstance(p.get(k), dict):
            _fail(source, f"provenance.{k}", f"should be a JSON object, got {p.get(k)!r}")


@dataclass
class Record:
    """One run: ``config`` (what was run), ``metrics`` (what it measured), ``provenance``
    (who ran it, where, from which commit), ``grid`` (the driver's cell, when the grid made it)."""

    config: dict
    metrics: dict
    provenance: dict
    grid: dict | None = None
    schema: int = SCHEMA_VERSION
    KIND = ""

    def to_json(self) -> dict:
        out = {"kind": self.KIND, "schema": self.schema, "config": self.config,
               "metrics": self.metrics, "provenance": self.provenance}
        if self.grid is not None:
            out["grid"] = self.grid
        return out

    @classmethod
    def from_json(cls, obj: dict, source="record") -> "Record":
        """The record in ``obj`` (a parsed JSON object), validated; :class:`RecordError` names
        ``source`` and the first bad field."""
        if not isinstance(obj, dict):
            _fail(source, "the record", f"should be a JSON object, got {type(obj).__name__}")
        if obj.get("kind") != cls.KIND:
            _fail(source, "kind", f"is {obj.get('kind')!r}, expected {cls.KIND!r}")
        schema = obj.get("schema", 1)
        if schema != SCHEMA_VERSION:
            _fail(source, "schema", f"is {schema!r}; this code reads version {SCHEMA_VERSION}")
        for k in ("config", "metrics", "provenance"):
            if not isinstance(obj.get(k), dict):
                _fail(source, k, f"should be a JSON object, got {obj.get(k)!r}")
        if obj.get("grid") is not None and not isinstance(obj["grid"], dict):
            _fail(source, "grid", f"should be a JSON object, got {obj['grid']!r}")
        unknown = sorted(set(obj) - {"kind", "schema", "config", "metrics", "provenance", "grid", "_path"})
        if unknown:
            _fail(source, "the record", f"has unknown sections {unknown} (allowed: kind, schema, "
                  "config, metrics, provenance, grid)")
        _check_provenance(obj["provenance"], source)
        rec = cls(obj["config"], obj["metrics"], obj["provenance"], obj.get("grid"), schema)
        rec.validate(source)
        return rec

    def validate(self, source="record") -> None:
        """Checks of the kind's own fields (subclasses)."""

    def write(self, path) -> Path:
        """Validate and write the record atomically to ``path`` (with a checksum)."""
        obj = parse_record(self.to_json(), path).to_json()
        return atomic_write_json(path, obj, checksum=True)  # read_record verifies the checksum


@dataclass
class TrainRecord(Record):
    """A training (``trs_lib.train.train``): ``config`` is its :class:`~trs_lib.recipes.TrainConfig`;
    ``metrics`` has ``final`` (test accuracies at the end), ``history`` (one entry per epoch) and
    ``config_hash`` (the run's name)."""

    KIND = "train"

    def validate(self, source="record") -> None:
        for k, typ in (("method", str), ("dataset", str), ("seed", int), ("epochs", int)):
            v = self.config.get(k)
            if not isinstance(v, typ) or isinstance(v, bool):
                _fail(source, f"config.{k}", f"should be {typ.__name__}, got {v!r}")
        if self.config["epochs"] < 0:
            _fail(source, "config.epochs", f"should be >= 0, got {self.config['epochs']}")
        m = self.metrics
        for k, typ in (("final", dict), ("history", list), ("config_hash", str)):
            if k in m and not isinstance(m[k], typ):
                _fail(source, f"metrics.{k}", f"should be a {typ.__name__}, got {type(m[k]).__name__}")
        for i, epoch in enumerate(m.get("history", [])):
            if not isinstance(epoch, dict):
                _fail(source, f"metrics.history[{i}]", "should be a JSON object")


@dataclass
class EvalRecord(Record):
    """One evaluation suite (``trs_lib.evaluate.run``): ``metrics`` has ``rows`` (one per attack
    setting: ``key`` as :func:`trs_lib.paper_numbers.row_key` makes it; an accuracy row also
    ``accuracy``, ``ci95`` (95% Wilson interval) and ``correct`` (one ``0``/``1`` per point, in
    the order of the evaluated points, so two columns compare on the same points)), ``n_test``,
    ``clean_accuracy`` and ``member_clean_accuracy``."""

    KIND = "eval"

    @property
    def rows(self) -> list:
        return self.metrics["rows"]

    def row(self, key: str) -> dict | None:
        """The row with ``key``, or None."""
        return next((r for r in self.rows if r.get("key") == key), None)

    def validate(self, source="record") -> None:
        m = self.metrics
        if not isinstance(m.get("rows"), list):
            _fail(source, "metrics.rows", f"should be a list, got {m.get('rows')!r}")
        n = m.get("n_test")
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            _fail(source, "metrics.n_test", f"should be a positive integer, got {n!r}")
        if "clean_accuracy" in m and not _is_fraction(m["clean_accuracy"]):
            _fail(source, "metrics.clean_accuracy", f"should be in [0, 1], got {m['clean_accuracy']!r}")
        for i, r in enumerate(m["rows"]):
            where = f"metrics.rows[{i}]"
            if not isinstance(r, dict) or not isinstance(r.get("key"), str):
                _fail(source, where, "should be an object with a string 'key'")
            where = f"metrics.rows[{i}] ({r['key']})"
            if "accuracy" in r and not _is_fraction(r["accuracy"]):
                _fail(source, f"{where}.accuracy", f"should be in [0, 1], got {r['accuracy']!r}")
            if "correct" in r:
                c, points = r["correct"], r.get("n_test", n)
                if not isinstance(c, str) or set(c) - {"0", "1"}:
                    _fail(source, f"{where}.correct", "should be a string of 0s and 1s")
                if points is not None and len(c) != points:
                    _fail(source, f"{where}.correct", f"has {len(c)} points, n_test is {points}")
                if "accuracy" in r and abs(c.count("1") / max(len(c), 1) - r["accuracy"]) > 1e-6:  # float32 sums
                    _fail(source, f"{where}.accuracy", f"is {r['accuracy']!r} but 'correct' says "
                          f"{c.count('1')}/{len(c)}")
            if "ci95" in r:
                ci = r["ci95"]
                if not (isinstance(ci, list) and len(ci) == 2 and all(map(_is_fraction, ci))
                        and ci[0] <= ci[1]):
                    _fail(source, f"{where}.ci95", f"should be [low, high] in [0, 1], got {ci!r}")
                if "accuracy" in r and not ci[0] - 1e-6 <= r["accuracy"] <= ci[1] + 1e-6:
                    _fail(source, f"{where}.ci95", f"{ci} does not contain the accuracy {r['accuracy']}")

    def complete(self) -> list[str]:
        """The keys of accuracy rows that lack their interval or per-point outcomes (a record
        the evaluation wrote has none: ``trs_lib.evaluate.run`` refuses to write one)."""
        return [r["key"] for r in self.rows if "accuracy" in r and not ("correct" in r and "ci95" in r)]


_TYPES = {cls.KIND: cls for cls in (TrainRecord, EvalRecord)}


def parse_record(obj: dict, source="record") -> Record:
    """The typed record of a parsed JSON object (:class:`TrainRecord` or :class:`EvalRecord` by
    its ``kind``); :class:`RecordError` names ``source`` and the bad field."""
    kind = obj.get("kind") if isinstance(obj, dict) else None
    if kind not in _TYPES:
        _fail(source, "kind", f"is {kind!r}; allowed: {list(_TYPES)}")
    return _TYPES[kind].from_json(obj, source)


def write_record(path, kind: str, config: dict, metrics: dict, wall_time_s: float, device=None,
                 grid: dict | None = None) -> Path:
    """Validate and write one run record atomically to ``path`` (its provenance made now)."""
    if kind not in _TYPES:
        raise ValueError(f"unknown record kind {kind!r}; allowed: {list(_TYPES)}")
    return _TYPES[kind](config, metrics, provenance(wall_time_s, device), grid).write(path)


def read_record(path) -> dict:
    """Read and validate a run record (its JSON object; :func:`parse_record` for the typed one).
    A file that is not a record of its kind raises an error naming the file and the field."""
    return parse_record(read_json(path), path).to_json()


# ------------------------------------------------------------------------------ the reader
def record_path(cell, root=None) -> Path:
    """``<results dir>/<cell kind>/<cell name>.json`` for a grid cell (``trs_lib.companion.grid``)."""
    return Path(root or results_dir()) / cell.kind / f"{cell.name}.json"


def notebook_path(cell, root=None) -> Path:
    """The executed notebook of a cell, beside its record."""
    return record_path(cell, root).with_suffix(".ipynb")


def load_records(root=None, warn=None) -> dict:
    """Every run record under ``root`` (default ``results/``), keyed ``<kind>/<name>``.

    A file that is not a readable record is skipped with a message through ``warn``
    (default: ``warnings.warn``), never silently used.
    """
    root = Path(root or results_dir())
    warn = warn or (lambda msg: warnings.warn(msg, stacklevel=2))
    out = {}
    if not root.is_dir():
        return out
    for path in sorted(root.glob("*/*.json")):
        if path.parent.name in _NOT_RECORDS:
            continue
        try:
            rec = read_record(path)
        except CorruptFileError as err:  # RecordError included
            warn(f"skipping {path}: {err}")
            continue
        rec["_path"] = str(path.relative_to(root))
        out[f"{path.parent.name}/{path.stem}"] = rec
    return out


def cell_record(cell, records: dict) -> dict | None:
    """The record of a grid cell, or None when it has not run."""
    return records.get(f"{cell.kind}/{cell.name}")


