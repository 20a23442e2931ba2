"""The cheap double backward without PyTorch's private engine query: the fallback (compute
every term) must give the same numbers, so a torch release that drops
``torch._C._will_engine_execute_node`` falls back correctly instead of changing results."""
import copy

import pytest
import torch

from trs_lib import double_backward as DB
from trs_lib import trs as T
from trs_lib.ensemble import build_ensemble

F64 = torch.float64


def _trs_step(ens, x, y):
    """Loss and weight gradients of cross-entropy + the TRS regulariser (a training step's)."""
    ens.train()
    ce, grads = T.input_gradients(ens.member_logits, x, y, create_graph=True)
    reg = T.trs_regularizer(grads, "seed", lam=0.1, c=1.0)
    loss = ce.sum() + sum(reg.values())
    params = [p for p in ens.parameters() if p.requires_grad]
    return loss.detach(), torch.autograd.grad(loss, params)


@pytest.mark.parametrize("arch, dataset, size", [("small_cnn", "mnist5k", 28), ("resnet20", "cifar10", 16)])
def test_fallback_without_the_engine_query_gives_the_same_step(monkeypatch, arch, dataset, size):
    ens = build_ensemble(arch, dataset, 3, 0).to(F64)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, 3 if dataset == "cifar10" else 1, size, size, generator=g, dtype=F64)
    y = torch.randint(0, 10, (6,), generator=g)
    assert DB._will_execute is not None, "this torch has no engine query: the fallback is the default"
    queried = []
    real = DB._will_execute
    monkeypatch.setattr(DB, "_will_execute", lambda node: queried.append(1) or real(node))
    loss, grads = _trs_step(copy.deepcopy(ens), x, y)
    assert queried, "the engine query was never asked: the test would not see the fallback differ"
    monkeypatch.setattr(DB, "_will_execute", None)
    loss_fb, grads_fb = _trs_step(copy.deepcopy(ens), x, y)
    assert torch.allclose(loss, loss_fb, rtol=0, atol=1e-12)
    for a, b in zip(grads, grads_fb):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
