"""trs_lib.companion.zoo: the committed weights load in one call, match their checksums and reproduce
their record's clean accuracy; an empty zoo says so."""
import pytest

from trs_lib.companion import grid as G
from trs_lib import evaluate as E, records
from trs_lib.companion import tables, zoo
from trs_lib.paths import results_dir


@pytest.mark.parametrize("name,seed", zoo.available() or [pytest.param(
    None, None, marks=pytest.mark.skip(reason="the zoo is empty until the regrid commits weights "
                                              "(python -m trs_lib.companion.zoo build)"))])
def test_committed_zoo_entry_loads_and_matches_its_record(name, seed):
    ensemble, record, card = zoo.load(name, seed)  # checks the SHA-256 against the index
    e = record["zoo"]
    assert name == zoo.zoo_name(e["column"], e["rung"])
    # the entry is its rung's training of its column, and that training's record
    assert e["train"] == G.train_cell(e["column"], e["dataset"], e["rung"], seed).name
    assert record["config"]["method"] == G.COLUMNS[e["column"]][0]
    acc = E.clean_accuracy(ensemble, *E.evaluation_points(e["dataset"], e["n_test"]))
    assert abs(acc - e["clean_accuracy"]) <= 1 / e["n_test"] + 1e-9, (acc, e["clean_accuracy"])


def test_committed_zoo_is_at_most_40_mb():
    assert sum(e["bytes"] for e in zoo.entries()) / 2**20 <= zoo.MAX_MB


def test_empty_zoo_says_how_to_fill_it(tmp_path):
    assert zoo.available(tmp_path) == [] and zoo.entries(tmp_path) == []
    with pytest.raises(zoo.ZooError, match="the zoo is empty"):
        zoo.load("trs", 0, root=tmp_path)


def test_build_load_and_checksum(tmp_path, monkeypatch):
    """A zoo built from a (random, untrained) ensemble in runs/ loads with its record; a
    changed weights file is refused."""
    from trs_lib.checkpoint import save_weights
    from trs_lib.ensemble import build_ensemble
    monkeypatch.setenv("TRS_RUNS_DIR", str(tmp_path / "runs"))
    root = tmp_path / "results"
    tc = G.train_cell("trs", "mnist5k", "cpu", 0)
    ens = build_ensemble("small_cnn", "mnist5k", 3, seed=0).eval()
    save_weights(tmp_path / "runs" / tc.name / "weights", ens, tc.config().to_dict())
    records.write_record(records.record_path(tc, root), "train", tc.config().to_dict(), {}, 1.0)
    ec = G.table_cells("1", "cpu", 0)["eval"][("trs", "worst_case")]
    n = 50
    acc = E.clean_accuracy(ens, *E.evaluation_points("mnist5k", n))
    records.write_record(records.record_path(ec, root), "eval", {},
                         {"rows": [], "n_test": n, "clean_accuracy": acc}, 1.0)
    logs = []
    out = zoo.build("cpu", 0, columns=["trs", "adp"], root=root, log=logs.append)
    assert [e["column"] for e in out] == ["trs"] and any("adp" in m and "left out" in m for m in logs)
    assert zoo.available(root) == [("trs", 0)]
    assert records.load_records(root, warn=pytest.fail)  # the zoo's files are not records
    loaded, record, card = zoo.load("trs", 0, root=root)
    assert record["zoo"]["clean_accuracy"] == acc and record["config"]["method"] == "trs"
    assert E.clean_accuracy(loaded, *E.evaluation_points("mnist5k", n)) == acc
    w = zoo.zoo_dir(root) / out[0]["weights"]
    w.write_bytes(w.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(zoo.ZooError, match="does not match"):
        zoo.load("trs", 0, root=root)


def test_zoo_index_sits_beside_the_records_without_being_one():
    assert not any(k.startswith("zoo/") for k in records.load_records(results_dir(), warn=lambda m: None))


def test_weights_with_a_dot_in_their_name_round_trip(tmp_path):
    """A zoo stem such as ``trs_c0.5-seed0`` holds a dot: saving and loading by the stem, or by
    either file, must not cut the name at it (it once looked for ``trs_c0.json``)."""
    import torch
    from trs_lib.checkpoint import load_weights, save_weights
    from trs_lib.ensemble import build_ensemble
    ens = build_ensemble("small_cnn", "mnist5k", 2, seed=1)
    st = save_weights(tmp_path / "trs_c0.5-seed0", ens, {"arch": "small_cnn", "dataset": "mnist5k",
                                                         "num_models": 2})
    assert st.name == "trs_c0.5-seed0.safetensors" and (tmp_path / "trs_c0.5-seed0.json").is_file()
    for given in ("trs_c0.5-seed0", "trs_c0.5-seed0.safetensors", "trs_c0.5-seed0.json"):
        loaded, _ = load_weights(tmp_path / given)
        for a, b in zip(loaded.state_dict().values(), ens.state_dict().values()):
            assert torch.equal(a, b)


def test_every_zoo_entry_has_a_model_card_that_validates_and_matches_the_records():
    from trs_lib.companion import model_cards as MC
    from trs_lib.records import load_records
    recs = load_records()
    assert zoo.entries(), "the committed zoo is empty"
    for e in zoo.entries():
        card = MC.read_card(e, zoo.zoo_dir())
        assert card == MC.card(e, recs), f"{e['name']}: the committed card is stale (python -m trs_lib.companion.zoo cards)"
        assert card["clean_acc"] == round(100 * e["clean_accuracy"], 2)
        assert card["worst_case_acc"] is None or card["worst_case_acc"] <= card["clean_acc"]
        assert card["records"]["train"] == e["record"]
    bad = dict(card, clean_acc=120.0)
    with pytest.raises(ValueError, match="clean_acc"):
        MC.check_card(bad)
    with pytest.raises(ValueError, match="'eps' is missing"):
        MC.check_card({k: v for k, v in card.items() if k != "eps"})
