"""Layers whose double backward is cheap, for TRS's double backpropagation.

TRS trains on input gradients (paper Sec. 3, Algorithm 1), so every layer is differentiated
twice: once for the input gradient (``create_graph=True``), again by the loss's backward.
PyTorch's own second derivatives of four layers do avoidable work:

* BatchNorm (``batchnorm_double_backward``): a composite of about twenty elementwise passes
  over the activation; here three reductions and five passes, two of them PyTorch's fused
  BatchNorm-backward kernel.
* Convolution (``_convolution_double_backward``): a second forward convolution on transposed
  copies for the weight term, run even when the weight's gradient is not wanted (the
  smoothness PGD); here one forward convolution and one weight-gradient kernel, each when needed.
* ReLU and max pooling: their backward's derivative with respect to the layer's input is zero,
  and PyTorch fills a zero tensor and adds it in; here that term is absent.

Forward kernels and first-backward kernels are PyTorch's own, so outputs and input gradients are
bit-identical; second derivatives agree to rounding (``tests/test_speed_equivalence.py``
compares them with PyTorch's in float64). Inside :func:`cheap_double_backward`, a
``TorchFunctionMode``, the functional calls of any model (``F.conv2d`` from ``nn.Conv2d``,
``F.batch_norm`` in training mode, ``F.relu``, ``F.max_pool2d``) record these functions; models
and their state dicts are untouched. ``trs_lib.trs`` runs the members' forward inside it.

Input-only derivatives are a property of the backward pass being run, not of the process: a
convolution's backward asks the autograd engine whether the current graph task will execute the
node its weight (bias) feeds (``torch._C._will_engine_execute_node``, the query PyTorch's own
``register_multi_grad_hook`` uses), and computes the weight and bias terms only if so. A
``torch.autograd.grad(..., inputs=<inputs>)`` (the input gradients, the smoothness PGD) thus
builds no weight term, while ``loss.backward()`` on the same graph gets every term; two threads
differentiating at once each get their own answer (``tests/test_threads.py``). The engine refuses
the query for a leaf during ``autograd.grad``, so a weight that is a leaf enters the convolution
through a view (one autograd node, no copy) whose node is asked instead.

BatchNorm's math (training mode, per channel, ``<.>`` the mean over the M = N*H*W positions,
``xh = (x - mu) r`` with ``r = 1/sqrt(var + eps)``, ``s = w r``, ``A = <gy>``, ``B = <gy xh>``):

* first backward: ``gx = s (gy - A - xh B)``, ``gw = M B``, ``gb = M A``;
* its backward, for upstream ``v = dL/dgx`` (and ``om = dL/dgw``, ``be = dL/dgb``, usually absent):
  ``dL/dgy = s (v - <v> - xh <v xh>) + om xh + be`` (BatchNorm's backward applied to v),
  ``dL/dw = r M (<v gy> - A <v> - B <v xh>)``, and
  ``dL/dx = r [-sB v + Q gy - (-sB <v> + Q A) - xh (-sB <v xh> + Q B + P r / M)]`` with
  ``Q = om - s <v xh>``, ``P = w M (<v gy> - A <v> - B <v xh>)``.

Convolution's: ``gx = conv_transpose(gy, w)``, so for upstream ``v``:
``dL/dgy = conv(v, w)`` and ``dL/dw = weight_grad(input=v, grad_output=gy)``.
"""
from __future__ import annotations

import contextlib
import threading

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.overrides import TorchFunctionMode

__all__ = ["cheap_double_backward", "batch_norm_train", "conv2d", "relu", "max_pool2d",
           "recorded_batch_norm_stats", "replay_running_stats"]

_aten = torch.ops.aten
_bn_backward = _aten.native_batch_norm_backward
# the engine's "will this node run in the current backward pass" (private; absent: always compute)
_will_execute = getattr(torch._C, "_will_engine_execute_node", None)


def _wanted(ctx, i: int) -> bool:
    """Whether the backward pass now running needs the gradient of input ``i`` of ``ctx``'s
    function: it requires grad and the engine will execute the node it feeds. Unknown (the
    engine refuses the query, e.g. a leaf during ``autograd.grad``): True, the safe answer."""
    if not ctx.needs_input_grad[i]:
        return False
    node = ctx.next_functions[i][0]
    if node is None:
        return False
    if _will_execute is None:
        return True
    try:
        return bool(_will_execute(node))
    except RuntimeError:
        return True


def _non_leaf(t):
    """``t`` itself, or a view of it when it is a leaf that requires grad (see the module
    docstring: the engine answers :func:`_wanted` for the view's node, not for a leaf's)."""
    if t is not None and t.requires_grad and t.grad_fn is None:
        return t.view_as(t)
    return t


# ---------------------------------------------------------------------------- BatchNorm
def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.view(1, -1, *([1] * (ndim - 2)))


_recording = threading.local()   # .stats: a list while recorded_batch_norm_stats() is active


@contextlib.contextmanager
def recorded_batch_norm_stats():
    """Within it, each training-mode BatchNorm call of this module that updates running
    statistics appends ``(running_mean, running_var, momentum, mean, unbiased_var)`` to the
    yielded list, in call order (this thread only): what that forward added to the running
    averages, for :func:`replay_running_stats`."""
    stats = []
    saved = getattr(_recording, "stats", None)
    _recording.stats = stats
    try:
        yield stats
    finally:
        _recording.stats = saved


@torch.no_grad()
def replay_running_stats(stats) -> None:
    """Update each running mean and variance as a second forward on the same batch with the same
    weights would (batch statistics equal to the recorded ones): ``r <- (1 - m) r + m s``.
    Replaces that forward (the faithful TRS step's logging forward, ``trs_lib.methods.trs``)."""
    for running_mean, running_var, momentum, mean, var in stats:
        running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        running_var.mul_(1 - momentum).add_(var.to(running_var.dtype), alpha=momentum)


class _BatchNormTrain(torch.autograd.Function):
    """Training-mode BatchNorm: PyTorch's kernels forward and backward; the differentiable
    backward is :class:`_BatchNormBackward`."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps):
        out, mean, invstd = torch.native_batch_norm(x, weight, bias, running_mean, running_var,
                                                    True, momentum, eps)
        stats = getattr(_recording, "stats", None)
        if stats is not None and running_mean is not None and running_var is not None:
            n = x.numel() // x.shape[1]
            var = (invstd.double().pow(-2) - eps) * (n / max(n - 1, 1))
            stats.append((running_mean, running_var, momentum, mean.detach(), var))
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, gy):
        x, weight, mean, invstd = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if torch.is_grad_enabled():  # create_graph: a differentiable first backward
            gx, gw, gb = _BatchNormBackward.apply(gy, x, weight, mean, invstd, ctx.eps)
        else:
            gx, gw, gb = _bn_backward(gy, x, weight, None, None, mean, invstd, True, ctx.eps,
                                      [need_x, need_w, need_b])
        return (gx if need_x else None, gw if need_w else None, gb if need_b else None,
                None, None, None, None)


class _BatchNormBackward(torch.autograd.Function):
    """``(gy, x, w) -> (gx, gw, gb)`` of training-mode BatchNorm, with the closed-form derivative
    of the module docstring (``mean`` and ``invstd`` are functions of x, accounted for there)."""

    @staticmethod
    def forward(ctx, gy, x, weight, mean, invstd, eps):
        gx, gw, gb = _bn_backward(gy, x, weight, None, None, mean, invstd, True, eps,
                                  [True, True, True])
        ctx.save_for_backward(gy, x, weight, mean, invstd, gw, gb)
        ctx.eps = eps
        ctx.set_materialize_grads(False)   # dL/dgw, dL/dgb are usually absent: keep them None
        return gx, gw, gb

    @staticmethod
    @once_differentiable
    def backward(ctx, v, om, be):
        gy, x, weight, mean, invstd, gw, gb = ctx.saved_tensors
        nd, eps = x.dim(), ctx.eps
        m = x.numel() // x.shape[1]
        view = lambda t: _channel_view(t, nd)
        if v is None:
            v = torch.zeros_like(x)
        # <v>, <v xh> and BatchNorm's backward of v (the first part of dL/dgy): one fused pass.
        d_gy, s_vxh, s_v = _bn_backward(v, x, weight, None, None, mean, invstd, True, eps,
                                        [ctx.needs_input_grad[0], True, True])
        # <v gy>: the same kernel with input gy, mean 0 and invstd 1 returns sum(v * gy).
        _, s_vgy, _ = _bn_backward(v, gy, None, None, None, torch.zeros_like(mean),
                                   torch.ones_like(invstd), True, eps, [False, True, False])
        a, b = gb / m, gw / m                        # A = <gy>, B = <gy xh>
        s = weight * invstd
        dot = s_vgy - a * s_v - b * s_vxh            # M (<v gy> - A<v> - B<v xh>)
        om_ = om if om is not None else torch.zeros_like(s)
        q = om_ - s * s_vxh / m
        d_x = None
        if ctx.needs_input_grad[1]:
            c_v = -invstd * s * b
            c_g = invstd * q
            c_x = -invstd * (-s * b * s_vxh / m + q * b + weight * dot * invstd / m) * invstd
            c_0 = -invstd * (-s * b * s_v / m + q * a) - c_x * mean   # xh = (x - mean) invstd
            d_x = torch.addcmul(view(c_0), v, view(c_v))
            d_x.addcmul_(gy, view(c_g)).addcmul_(x, view(c_x))
        d_w = invstd * dot if ctx.needs_input_grad[2] else None
        if d_gy is not None and (om is not None or be is not None):
            shift = (be if be is not None else 0) - om_ * invstd * mean
            d_gy = d_gy.addcmul(x, view(om_ * invstd)).add_(view(shift))
        return d_gy, d_x, d_w, None, None, None


def batch_norm_train(x, weight, bias, running_mean=None, running_var=None, momentum=0.1,
                     eps=1e-5) -> torch.Tensor:
    """Training-mode ``F.batch_norm`` (batch statistics; running statistics updated in place)
    with the cheap double backward. ``weight`` and ``bias`` are required. Under autocast it
    runs in float32 (statistics and second derivatives stay accurate)."""
    dev = x.device.type
    if torch.is_autocast_enabled(dev):
        with torch.autocast(dev, enabled=False):
            return _BatchNormTrain.apply(x.float(), weight.float(), bias.float(), running_mean,
                                         running_var, momentum, eps)
    return _BatchNormTrain.apply(x, weight, bias, running_mean, running_var, momentum, eps)


# ---------------------------------------------------------------------------- convolution
class _Conv(torch.autograd.Function):
    """``conv2d`` with PyTorch's kernels; its differentiable backward is :class:`_ConvInputGrad`
    for the input and PyTorch's own rule for the weight (skipped when the backward pass now
    running does not need the weight, :func:`_wanted`)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conf = (stride, padding, dilation, groups)
        ctx.has_bias = bias is not None
        return _aten.convolution(x, weight, bias, stride, padding, dilation, False, [0, 0], groups)

    @staticmethod
    def backward(ctx, gy):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        need_x, need_w, need_b = ctx.needs_input_grad[0], _wanted(ctx, 1), _wanted(ctx, 2)
        bias_sizes = [weight.shape[0]] if ctx.has_bias else None
        if not torch.is_grad_enabled():
            gx, gw, gb = _aten.convolution_backward(gy, x, weight, bias_sizes, stride, padding,
                                                    dilation, False, [0, 0], groups,
                                                    [need_x, need_w, need_b])
        else:
            gx = _ConvInputGrad.apply(gy, weight, x.detach(), ctx.conf) if need_x else None
            gw = gb = None
            if need_w:      # PyTorch's differentiable rule, for a caller that wants it
                gw = _aten.convolution_backward(gy, x, weight, None, stride, padding, dilation,
                                                False, [0, 0], groups, [False, True, False])[1]
            if need_b:
                gb = gy.sum((0, 2, 3))
        return gx, gw, gb, None, None, None, None


class _ConvInputGrad(torch.autograd.Function):
    """``(gy, w) -> conv_transpose(gy, w)``, the input gradient of a convolution; ``x`` gives
    the input's shape only. Its backward is one convolution and one weight-gradient kernel."""

    @staticmethod
    def forward(ctx, gy, weight, x, conf):
        stride, padding, dilation, groups = conf
        ctx.save_for_backward(gy, weight)
        ctx.conf = conf
        return _aten.convolution_backward(gy, x, weight, None, stride, padding, dilation, False,
                                          [0, 0], groups, [True, False, False])[0]

    @staticmethod
    @once_differentiable
    def backward(ctx, v):
        gy, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conf
        d_gy = d_w = None
        if ctx.needs_input_grad[0]:
            d_gy = _aten.convolution(v, weight, None, stride, padding, dilation, False, [0, 0], groups)
        if _wanted(ctx, 1):
            d_w = _aten.convolution_backward(gy, v, weight, None, stride, padding, dilation, False,
                                             [0, 0], groups, [False, True, False])[1]
        return d_gy, d_w, None, None


def conv2d(x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """``F.conv2d`` (numeric padding) with the cheap double backward. Under autocast, inputs,
    weight and bias are cast to the autocast dtype, as autocast does for ``F.conv2d``."""
    conf = (list(stride), list(padding), list(dilation), groups)
    dev = x.device.type
    if torch.is_autocast_enabled(dev):
        dt = torch.get_autocast_dtype(dev)
        with torch.autocast(dev, enabled=False):
            return _Conv.apply(x.to(dt), weight.to(dt), None if bias is None else bias.to(dt), *conf)
    return _Conv.apply(x, _non_leaf(weight), _non_leaf(bias), *conf)


# ---------------------------------------------------------------------------- ReLU, max pooling
class _ReLU(torch.autograd.Function):
    """``relu`` whose first backward's derivative has no (zero) term for the ReLU's input."""

    @staticmethod
    def forward(ctx, x):
        out = torch.relu(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, gy):
        (out,) = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _ReLUBackward.apply(gy, out)
        return _aten.threshold_backward(gy, out, 0)


class _ReLUBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gy, out):
        ctx.save_for_backward(out)
        return _aten.threshold_backward(gy, out, 0)

    @staticmethod
    @once_differentiable
    def backward(ctx, v):
        (out,) = ctx.saved_tensors
        return _aten.threshold_backward(v, out, 0), None


def relu(x):
    """``F.relu`` with a cheap double backward (PyTorch's fills and adds a zero tensor)."""
    return _ReLU.apply(x)


class _MaxPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, conf):
        out, idx = _aten.max_pool2d_with_indices(x, *conf)
        ctx.save_for_backward(x, idx)
        ctx.conf = conf
        return out

    @staticmethod
    def backward(ctx, gy):
        x, idx = ctx.saved_tensors
        if torch.is_grad_enabled():
            return _MaxPoolBackward.apply(gy, x, idx, ctx.conf), None
        return _aten.max_pool2d_with_indices_backward(gy, x, *ctx.conf, idx), None


class _MaxPoolBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gy, x, idx, conf):
        ctx.save_for_backward(idx)
        return _aten.max_pool2d_with_indices_backward(gy, x.detach(), *conf, idx)

    @staticmethod
    @once_differentiable
    def backward(ctx, v):
        (idx,) = ctx.saved_tensors
        d_gy = v.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
        return d_gy, None, None, None


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """``F.max_pool2d`` with a cheap double backward."""
    pair = lambda v: [v, v] if isinstance(v, int) else list(v)
    conf = (pair(kernel_size), pair(stride if stride is not None else kernel_size), pair(padding),
            pair(dilation), ceil_mode)
    return _MaxPool.apply(x, conf)


# ---------------------------------------------------------------------------- the mode
_BATCH_NORM_FNS = (F.batch_norm,)
_MAX_POOL_FNS = (F.max_pool2d, F._max_pool2d) if hasattr(F, "_max_pool2d") else (F.max_pool2d,)


def _route_conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if isinstance(padding, str) or x.dim() != 4:
        return None
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
    return conv2d(x, weight, bias, pair(stride), pair(padding), pair(dilation), groups)


def _route_batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
                      momentum=0.1, eps=1e-5):
    if not training or weight is None or bias is None or x.dim() != 4:
        return None
    return batch_norm_train(x, weight, bias, running_mean, running_var, momentum, eps)


def _route_max_pool(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                    return_indices=False):
    if return_indices or x.dim() != 4:
        return None
    return max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode)


def _route_relu(x, inplace=False):
    return None if inplace else relu(x)


_ROUTES = {F.conv2d: _route_conv, F.relu: _route_relu, torch.relu: _route_relu,
           **{f: _route_batch_norm for f in _BATCH_NORM_FNS},
           **{f: _route_max_pool for f in _MAX_POOL_FNS}}


class _CheapDoubleBackward(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        route = _ROUTES.get(func)
        if route is not None and torch.is_grad_enabled():
            out = route(*args, **kwargs)
            if out is not None:
                return out
        return func(*args, **kwargs)


def cheap_double_backward():
    """Context in which ``F.conv2d``, training-mode ``F.batch_norm``, ``F.relu`` and
    ``F.max_pool2d`` (whether called by ``nn`` modules or functionally) record the autograd
    functions of this module, whose forward and first backward are PyTorch's kernels and whose
    second derivative does less work. Only the forward needs to run inside it."""
    return _CheapDoubleBackward()
