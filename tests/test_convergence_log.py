"""The trainer's per-epoch PGD-10 accuracy (a rung's convergence curve) is logged on a held-out
slice and leaves the training itself untouched."""
import torch

from trs_lib import train as TR


def _flat(run):
    return torch.cat([q.detach().flatten() for q in run.ensemble.parameters()])


def test_pgd_curve_is_logged_and_changes_no_weight(tmp_path, monkeypatch):
    kw = dict(method="trs", num_models=2, epochs=2, train_subset=128, batch_size=32, seed=1,
              progress=False, log=lambda *a: None)
    logged = TR.train("mnist5k", out_dir=tmp_path / "a", **kw)
    for epoch in logged.history:
        assert 0 <= epoch["test_pgd10_acc"] <= epoch["test_acc_ensemble"] + 1e-9
        assert epoch["test_pgd10_eps"] == TR.pgd_budget("mnist5k") == 0.15
        assert epoch["test_pgd10_points"] == TR.PGD_EVAL_POINTS
    assert logged.record["metrics"]["final"]["test_pgd10_acc"] == logged.history[-1]["test_pgd10_acc"]
    monkeypatch.setattr(TR, "PGD_EVAL_POINTS", 0)  # the trainer as it was before the curve
    plain = TR.train("mnist5k", out_dir=tmp_path / "b", **kw)
    assert "test_pgd10_acc" not in plain.history[-1]
    assert torch.equal(_flat(logged), _flat(plain))
    assert TR.pgd_budget("cifar10") == 0.02
