"""The record types (``trs_lib.records``): every committed record parses as its type, and a bad
field is named."""
import copy

import pytest

from trs_lib import provenance, records
from trs_lib.atomic import read_json
from trs_lib.paths import results_dir


def _committed():
    paths = [p for p in sorted(results_dir().glob("*/*.json")) if p.parent.name != "zoo"]
    assert paths, "no committed records found"
    return paths


def test_every_committed_record_parses_as_its_type_and_is_complete():
    kinds = {}
    for path in _committed():
        rec = records.parse_record(read_json(path), path)
        assert type(rec).KIND == path.parent.name, f"{path}: a {type(rec).KIND} record in {path.parent.name}/"
        kinds[type(rec).__name__] = kinds.get(type(rec).__name__, 0) + 1
        if isinstance(rec, records.EvalRecord):
            assert rec.complete() == [], f"{path}: accuracy rows without interval or points"
            assert rec.rows, f"{path}: no rows"
        assert rec.to_json()["schema"] == records.SCHEMA_VERSION
    assert set(kinds) == {"TrainRecord", "EvalRecord"}


def _eval_obj():
    return {"kind": "eval", "config": {}, "provenance": provenance.provenance(1.0),
            "metrics": {"n_test": 4, "clean_accuracy": 0.75,
                        "rows": [{"key": "pgd10/eps=0.1", "accuracy": 0.5, "correct": "1010",
                                  "ci95": [0.15, 0.85]}]}}


@pytest.mark.parametrize("edit, field", [
    (lambda o: o["metrics"]["rows"][0].update(accuracy=1.5), "accuracy"),
    (lambda o: o["metrics"]["rows"][0].update(correct="101"), "correct"),
    (lambda o: o["metrics"]["rows"][0].update(correct="1110"), "accuracy"),
    (lambda o: o["metrics"]["rows"][0].update(ci95=[0.6, 0.9]), "ci95"),
    (lambda o: o["metrics"].update(n_test=0), "metrics.n_test"),
    (lambda o: o["metrics"].update(rows={}), "metrics.rows"),
    (lambda o: o["provenance"].update(wall_time_s=-1), "provenance.wall_time_s"),
    (lambda o: o.update(schema=2), "schema"),
    (lambda o: o.update(kind="evaluate"), "kind"),
    (lambda o: o.update(extra={}), "unknown sections"),
])
def test_a_bad_field_is_named(edit, field):
    good = _eval_obj()
    assert isinstance(records.parse_record(copy.deepcopy(good), "x.json"), records.EvalRecord)
    bad = copy.deepcopy(good)
    edit(bad)
    with pytest.raises(records.RecordError, match=rf"x\.json: .*{field}"):
        records.parse_record(bad, "x.json")


def test_a_train_record_needs_its_config():
    obj = {"kind": "train", "config": {"method": "trs", "dataset": "mnist5k", "seed": 0, "epochs": 4},
           "metrics": {"final": {}, "history": [{}]}, "provenance": provenance.provenance(1.0)}
    rec = records.parse_record(obj, "t.json")
    assert isinstance(rec, records.TrainRecord) and rec.to_json()["config"] == obj["config"]
    del obj["config"]["seed"]
    with pytest.raises(records.RecordError, match="config.seed"):
        records.parse_record(obj, "t.json")


def test_write_refuses_an_invalid_record_and_stamps_memory(tmp_path):
    with pytest.raises(records.RecordError, match="accuracy"):
        records.write_record(tmp_path / "e.json", "eval", {}, {"rows": [{"key": "k", "accuracy": 2.0}]}, 1.0)
    assert not (tmp_path / "e.json").exists()
    with pytest.raises(ValueError, match="unknown record kind 'evaluate'"):
        records.write_record(tmp_path / "e.json", "evaluate", {}, {"rows": []}, 1.0)
    path = records.write_record(tmp_path / "e.json", "eval", {}, _eval_obj()["metrics"], 1.0)
    prov = records.read_record(path)["provenance"]
    assert prov["peak_memory_mib"] > 10  # a Python process with torch loaded
