"""Transfer threat model: the torchattack adapter, the cached transfer worst case, bad plans."""
import copy

import pytest
import torch
import torch.nn as nn

from trs_lib import attacks
from trs_lib.attacks.testing import quick_ensemble, test_points
from trs_lib.attacks.transfer_attacks import TRANSFER_ATTACKS, transfer_attack
from trs_lib.ensemble import Ensemble, build_ensemble
from trs_lib.surrogates import SURROGATE_SEEDS, surrogate_config, surrogate_ensembles, surrogate_spec
from trs_lib.transfer import craft, suite_row_key, transfer_rows, transfer_suite, transfer_worst_case
from trs_lib.worst_case import worst_case

RANDOMISED = ("di_fgsm", "vmi_fgsm", "admix", "ilpd", "fia")


def small_target():
    return build_ensemble("small_cnn", "mnist5k", 2, seed=7).eval()


def source_for(name):
    """A fresh untrained surrogate (a ResNet-20 for SGM, which needs skip connections)."""
    return build_ensemble("resnet20" if name == "sgm" else "small_cnn", "mnist5k",
                          1 if name == "sgm" else 2, seed=3).eval()


# ------------------------------------------------------------------ the adapter
@pytest.mark.parametrize("name", sorted(TRANSFER_ATTACKS))
def test_adapter_at_eps_zero_returns_x(name):
    x, y = test_points(4)
    out = transfer_attack(name, source_for(name), x, y, eps=0.0)
    assert torch.equal(out, x)


@pytest.mark.parametrize("name", sorted(TRANSFER_ATTACKS))
def test_adapter_stays_in_the_ball_and_box_and_leaves_params_and_rng_alone(name):
    x, y = test_points(6)
    model, eps = source_for(name), 0.15
    state = torch.random.get_rng_state()
    out = transfer_attack(name, model, x, y, eps=eps, steps=3)
    assert torch.equal(torch.random.get_rng_state(), state)      # global stream untouched
    assert (out - x).abs().max() <= eps + 1e-6 and out.min() >= 0 and out.max() <= 1
    assert (out - x).abs().max() > 0.01                           # it moved
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    if name in RANDOMISED:   # seeded: same seed same examples, another seed others
        assert torch.equal(out, transfer_attack(name, model, x, y, eps=eps, steps=3))
        assert not torch.equal(out, transfer_attack(name, model, x, y, eps=eps, steps=3, seed=1))


@pytest.mark.parametrize("name", sorted(set(TRANSFER_ATTACKS) - {"sgm"}))
def test_every_attack_succeeds_white_box_on_a_trained_surrogate(name):
    ens = quick_ensemble(1, 2)
    x, y = test_points(40)
    model = ens.member(0) if name in ("ilpd", "fia", "ila") else ens   # the one-member attacks
    out = transfer_attack(name, ens, x, y, eps=0.2)
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
        adv = (model(out).argmax(1) == y).float().mean().item()
    assert adv <= clean - 0.3, (clean, adv)


def test_sgm_is_mi_fgsm_with_the_residual_gradients_decayed():
    x, y = test_points(4)
    r20 = source_for("sgm")
    mi = transfer_attack("mi_fgsm", r20, x, y, eps=0.1, steps=2)
    assert torch.equal(transfer_attack("sgm", r20, x, y, eps=0.1, steps=2, gamma=1.0), mi)
    assert not torch.equal(transfer_attack("sgm", r20, x, y, eps=0.1, steps=2, gamma=0.2), mi)


def test_sgm_runs_only_on_surrogates_with_skip_connections(tmp_path):
    x, y = test_points(4)
    with pytest.raises(ValueError, match="skip connections"):
        transfer_attack("sgm", small_target(), x, y, eps=0.1)
    sur = {"cnn": small_target(), "r20": source_for("sgm")}
    res = transfer_worst_case(small_target(), x, y, surrogates=sur, eps=0.1,
                              attacks=[("sgm", {"steps": 2})], cache_dir=tmp_path)
    assert res["pairs"] == ["r20/sgm"] and res["skipped_pairs"] == ["cnn/sgm"]
    with pytest.raises(ValueError, match="'sgm' applies to none of the surrogates"):
        transfer_worst_case(small_target(), x, y, surrogates={"cnn": small_target()}, eps=0.1,
                            attacks=["sgm"], cache_dir=tmp_path)


def test_torchattack_mi_fgsm_agrees_with_torchattacks_within_1_5_points():
    torchattacks = pytest.importorskip("torchattacks")
    sur, tgt = quick_ensemble(1, 2), quick_ensemble(0, 2)
    x, y = test_points(200)
    eps, steps = 0.15, 10
    ours = transfer_attack("mi_fgsm", sur, x, y, eps=eps, steps=steps)
    theirs = torchattacks.MIFGSM(sur, eps=eps, alpha=eps / steps, steps=steps, decay=1.0)(x, y)
    with torch.no_grad():
        for model in (sur, tgt):
            a = (model(ours).argmax(1) == y).float().mean().item()
            b = (model(theirs).argmax(1) == y).float().mean().item()
            assert abs(a - b) <= 0.015, (a, b)
        clean = (sur(x).argmax(1) == y).float().mean().item()
        assert (sur(ours).argmax(1) == y).float().mean().item() < clean - 0.2   # a real attack


# ------------------------------------------------------------------ the transfer worst case
def test_a_surrogate_identical_to_the_target_gives_the_white_box_attack(tmp_path):
    tgt = quick_ensemble(0, 2)
    x, y = test_points(48)
    eps = 0.15
    x_adv, _ = craft(copy.deepcopy(tgt), "mi_fgsm", x, y, eps=eps, cache_dir=tmp_path)
    assert torch.equal(x_adv, attacks.get("mi_fgsm")(tgt, x, y, eps=eps))   # same examples
    tr = transfer_worst_case(tgt, x, y, surrogates={"self": copy.deepcopy(tgt)}, eps=eps,
                             attacks=["mi_fgsm"], cache_dir=tmp_path)
    wb = worst_case(tgt, x, y, eps=eps, attacks=[("mi_fgsm", {})])
    assert tr["correct"] == wb["correct"] and tr["accuracy"] == wb["accuracy"]
    assert tr["accuracy"] < tr["clean_accuracy"] - 0.2
    assert tr["broken_by"]["self/mi_fgsm"] == wb["broken_by"]["mi_fgsm"] > 0


class Half(nn.Module):
    """Logits ``(-s, s)`` with ``s = 20 (mean of one half of the image - 0.5)``: it reads only
    the left or only the right half."""

    def __init__(self, side):
        super().__init__()
        self.side = side
        self.dummy = nn.Parameter(torch.ones(()))

    def forward(self, x):
        half = x[..., :4] if self.side == "left" else x[..., 4:]
        s = 20 * self.dummy * (half.mean((1, 2, 3)) - 0.5)
        return torch.stack([-s, s], 1)


def test_models_on_disjoint_features_transfer_poorly(tmp_path):
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (40,), generator=g)
    # both halves carry the label: mean 0.5 -/+ 0.2 plus noise
    x = (0.5 + 0.2 * (2 * y.float() - 1)).view(-1, 1, 1, 1) + 0.05 * torch.randn(40, 1, 8, 8, generator=g)
    x = x.clamp(0, 1)
    left, right = Ensemble([Half("left")]).eval(), Ensemble([Half("right")]).eval()
    eps = 0.3
    tr = transfer_worst_case(right, x, y, surrogates={"left": left}, eps=eps,
                             attacks=["mi_fgsm", "ni_fgsm"], cache_dir=tmp_path)
    wb = worst_case(right, x, y, eps=eps, attacks=[("mi_fgsm", {}), ("ni_fgsm", {})])
    assert tr["clean_accuracy"] == 1.0
    assert wb["accuracy"] <= 0.05 and tr["accuracy"] == 1.0          # transfer >> white box
    assert tr["pair_accuracy"] == {"left/mi_fgsm": 1.0, "left/ni_fgsm": 1.0}
    own = transfer_worst_case(left, x, y, surrogates={"left": left}, eps=eps,
                              attacks=["mi_fgsm"], cache_dir=tmp_path)
    assert own["accuracy"] <= 0.05 and own["cache_hit"] == {"left/mi_fgsm": True}


class Counting(nn.Module):
    """A model that counts the forward passes that build a graph (gradient work)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.grad_calls = model, 0

    def forward(self, x):
        if torch.is_grad_enabled() and not torch.is_inference_mode_enabled():
            self.grad_calls += 1
        return self.model(x)


def test_the_cache_is_hit_on_a_second_call_without_any_gradient(tmp_path):
    sur, tgt = Counting(quick_ensemble(1, 2)), quick_ensemble(0, 2)
    x, y = test_points(16)
    first = transfer_suite(tgt, x, y, {"s": sur}, attacks=["mi_fgsm", "di_fgsm"], eps_list=(0.1, 0.2),
                           cache_dir=tmp_path)
    calls = sur.grad_calls
    assert calls > 0 and len(list(tmp_path.iterdir())) == 4
    second = transfer_suite(tgt, x, y, {"s": sur}, attacks=["mi_fgsm", "di_fgsm"],
                            eps_list=(0.1, 0.2), cache_dir=tmp_path)
    assert sur.grad_calls == calls
    assert list(second) == [suite_row_key(0.1), suite_row_key(0.2)] == ["transfer:linf/eps=0.1",
                                                                         "transfer:linf/eps=0.2"]
    for k in first:
        assert first[k]["correct"] == second[k]["correct"]
        assert not any(first[k]["cache_hit"].values()) and all(second[k]["cache_hit"].values())
        assert len(first[k]["broken_by_point"]) == 16 and len(first[k]["ci95"]) == 2
    rows = transfer_rows(tgt, x, y, {"s": sur}, attacks=["mi_fgsm", "di_fgsm"], eps_list=(0.1, 0.2),
                         cache_dir=tmp_path)
    assert sur.grad_calls == calls and [r["key"] for r in rows] == list(first)
    assert rows[1]["value"] == 0.2 and rows[1]["correct"] == first[suite_row_key(0.2)]["correct"]
    # another surrogate weight changes the key: crafted again
    with torch.no_grad():
        sur.model.members[0].fc2.bias.add_(0.01)
    third = transfer_suite(tgt, x, y, {"s": sur}, attacks=["mi_fgsm"], eps_list=0.1, cache_dir=tmp_path)
    assert sur.grad_calls > calls and not third[suite_row_key(0.1)]["cache_hit"]["s/mi_fgsm"]


# ------------------------------------------------------------------ bad plans
class OtherShape(nn.Module):
    def __init__(self, size=8, classes=10):
        super().__init__()
        self.fc = nn.Linear(size * size, classes)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("surrogates,attacks_,eps,match", [
    ("good", ["nope"], 0.1, r"unknown transfer attack 'nope'; valid names: \[.*'mi_fgsm'"),
    ("good", [("mi_fgsm", {"stepz": 3})], 0.1, r"unknown parameters \['stepz'\]"),
    ({"small": OtherShape(8)}, ["mi_fgsm"], 0.1, r"surrogate 'small' does not take the target's inputs of shape \(1, 28, 28\)"),
    ({"five": OtherShape(28, 5)}, ["mi_fgsm"], 0.1, r"surrogate 'five' outputs shape \(5,\).*\(10,\).*allowed: 10 classes"),
    ("good", ["mi_fgsm"], -0.1, r"eps=-0.1 is outside the allowed range \[0, 1\]"),
    ("good", ["mi_fgsm"], float("nan"), r"eps=nan is outside the allowed range \[0, 1\]"),
    ("good", ["mi_fgsm"], float("inf"), r"eps=inf is outside"),
    (["small_cnn"], ["mi_fgsm"], 0.1, r"surrogates must be a non-empty \{name: model\} mapping"),
])
def test_bad_plans_fail_before_any_work(tmp_path, surrogates, attacks_, eps, match):
    sur = Counting(small_target())
    surrogates = {"good": sur} if surrogates == "good" else surrogates
    x, y = test_points(4)
    with pytest.raises(ValueError, match=match):
        transfer_suite(small_target(), x, y, surrogates, attacks=attacks_, eps_list=(0.1, eps),
                       cache_dir=tmp_path)
    assert sur.grad_calls == 0 and not list(tmp_path.iterdir())


def test_unknown_surrogate_names_are_refused_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown surrogates \['nope'\]; valid surrogates: "
                                         r"\['resnet20', 'small_cnn', 'small_cnn\+resnet20'\]"):
        surrogate_ensembles(["small_cnn", "nope"])
    with pytest.raises(ValueError, match="unknown surrogate 'vgg'"):
        surrogate_spec("vgg")


def test_surrogate_seeds_are_disjoint_from_the_grids_and_trained_as_vanilla():
    grid_seeds = {0, 1, 2}   # every rung of trs_lib.companion.rungs trains seeds 0, 1, 2
    assert not set(SURROGATE_SEEDS.values()) & grid_seeds
    # member k of seed s is initialised from 1000 s + k: no member initialisation is shared
    inits = {1000 * s + k for s in grid_seeds for k in range(3)}
    assert not {1000 * s + k for s in SURROGATE_SEEDS.values() for k in range(3)} & inits
    cfg = surrogate_config(surrogate_spec("resnet20", epochs=2))
    assert (cfg.method, cfg.arch, cfg.num_models, cfg.seed, cfg.epochs) == ("vanilla", "resnet20", 1, 101, 2)
