"""LOTOS: the penalty against a float64 transcription of the authors' loop, the power
iteration against an SVD, a few training steps, and the real trainer's checkpointed state."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from trs_lib import checkpoint as ckpt
from trs_lib import methods
from trs_lib.ensemble import Ensemble, build_ensemble
from trs_lib.methods import StepContext
from trs_lib.methods import lotos as L
from trs_lib.recipes import make_config
from trs_lib.train import train


def tiny_member(seed):
    g = torch.Generator().manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 3, 3, stride=2, padding=1),
                      nn.Flatten(), nn.Linear(3 * 3 * 3, 4)).double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    return m


def their_loss(members, vectors, conv_factor, bottom_clip, decrement=0.01):
    """Ali-E/LOTOS train/Empirical/trainer.py lines 129-210 (conv layers, k = 1), in float64:
    ``vectors[k][conv_count]`` plays ``lsv_list_dict_conv[k][conv_count]``."""
    weights = torch.from_numpy(np.array([1 - decrement * i for i in range(100)]))
    ortho_loss_conv = 0
    for j, model in enumerate(members):
        conv_count = 0
        for m_name, m in model.named_modules():
            if not isinstance(m, torch.nn.Conv2d):
                continue
            for k in range(len(members)):
                if k == j:
                    continue
                bad_vector = vectors[k][conv_count]
                op_shape = [i for i in range(1, len(bad_vector.shape))]
                bad_vec_length = torch.sqrt(torch.sum((m(bad_vector) - m(torch.zeros_like(bad_vector))) ** 2, axis=op_shape)) / torch.sqrt(torch.sum(bad_vector ** 2, axis=op_shape))
                thresh = torch.nn.functional.relu(bad_vec_length - bottom_clip)
                weighted = torch.sum(torch.mul(thresh, weights[:len(thresh)])) / torch.sum(weights[:len(thresh)])
                ortho_loss_conv += conv_factor * weighted
            conv_count += 1
    return ortho_loss_conv   # their conv_normalizer is 1 (trainer.py lines 290-291)


def test_penalty_equals_a_float64_transcription_of_their_loss():
    members = [tiny_member(s) for s in range(3)]
    ens = Ensemble(members).double()
    g = torch.Generator().manual_seed(5)
    shapes = [(1, 1, 6, 6), (1, 2, 6, 6)]
    # vectors of different scales: the ratio divides by ||v||
    vecs = [[(0.1 + k) * torch.randn(s, generator=g, dtype=torch.float64) for s in shapes] for k in range(3)]
    ratios = [float((c(v) - c(torch.zeros_like(v))).norm().detach() / v.norm())
              for j, m in enumerate(members) for c in (m[0], m[2]) for k, vs in enumerate(vecs) if k != j
              for v in [vs[0] if c is m[0] else vs[1]]]
    mal = float(np.median(ratios))            # half the terms are active, half clipped at 0
    ours = 0.05 * L.lotos_penalty(ens, {(k, n): vecs[k][i] for k in range(3)
                                        for i, n in enumerate(("0", "2"))}, mal)
    theirs = their_loss(members, vecs, 0.05, mal)
    assert float(theirs.detach()) > 0
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)


def test_power_iteration_finds_the_top_right_singular_vector():
    conv = tiny_member(1)[2]
    n = 2 * 6 * 6
    basis = torch.eye(n, dtype=torch.float64).view(n, 2, 6, 6)
    a = L.conv_linear(conv, basis).flatten(1).T          # the layer's matrix (out, in)
    _, s, vh = torch.linalg.svd(a)
    v = L.power_iteration(conv, torch.ones(1, 2, 6, 6, dtype=torch.float64), 2000)
    assert abs((v.flatten() @ vh[0]).item()) == pytest.approx(1.0, abs=1e-6)
    assert L.conv_linear(conv, v, detach_weight=True).norm().item() == pytest.approx(s[0].item(), rel=1e-6)


def _steps(method, n, lr=1e-3, **cfg_kw):
    ens = build_ensemble("small_cnn", "mnist5k", 3, seed=4)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
    cfg = make_config("mnist5k", method, **cfg_kw)
    opt = torch.optim.Adam(ens.parameters(), lr)
    state, seen = {}, []
    for _ in range(n):
        loss, terms = methods.get(method).loss(ens, x, y, cfg, StepContext(0, 1, generator=g, state=state))
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen.append(terms)
    vectors = L.lotos_vectors(ens, x, dict(state), 20)
    return L.lotos_penalty(ens, vectors, cfg.lotos_mal).item(), state, seen


def test_lotos_steps_lower_the_penalty_that_vanilla_leaves():
    lotos_end, state, seen = _steps("lotos", 5, lr=1e-2, lotos_weight=1.0)
    vanilla_end, _, _ = _steps("vanilla", 5, lr=1e-2)
    first = seen[0]["lotos"].item()
    # at this rate the vanilla members' layers grow (penalty ~29); LOTOS keeps it below its start
    assert first > 0 and lotos_end < first and lotos_end < 0.5 * vanilla_end
    assert int(state["lotos.step"]) == 5 and "lotos.v.2.conv2" in state


def test_trs_lotos_adds_the_penalty_every_fifth_step():
    _, _, seen = _steps("trs_lotos", 6)
    on = [t["lotos"].item() > 0 for t in seen]
    assert on == [True, False, False, False, False, True]
    assert all("smoothness" in t for t in seen)


def test_the_trainer_trains_lotos_and_checkpoints_its_state(tmp_path):
    res = train("mnist5k", "lotos", out_dir=tmp_path / "run", progress=False, log=lambda s: None,
                epochs=1, train_subset=128, batch_size=64, num_models=2)
    assert res.history[-1]["train_lotos"] > 0
    meta, tensors = ckpt.latest_checkpoint(tmp_path / "run")
    assert int(tensors["method.lotos.step"]) == 2 and "method.lotos.v.1.conv1" in tensors
    assert L.FREQUENCY == {"lotos": 1, "trs_lotos": 5}
    # the new fields keep every existing run's name: absent from the identity unless changed
    assert not any(k.startswith("lotos") for k in make_config("mnist5k", "trs").identity())
    assert make_config("mnist5k", "trs_lotos").identity()["lotos_weight"] == 0.01
