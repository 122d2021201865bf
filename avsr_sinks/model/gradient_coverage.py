"""Which trainable parameters a training step leaves without a gradient.

DDP (without ``find_unused_parameters``, which costs every step a traversal of the autograd
graph) stops at its second step when a trainable parameter took no part in the loss, and in one
process such a parameter silently never trains. One forward and backward when the model is built
finds them before any data loader or process group starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class GradientCoverage:
    """``without_gradient``: trainable parameters that the loss does not reach. ``random_layer_skips``:
    modules that, in training mode, skip layers holding trainable parameters at random
    (``layerdrop`` > 0), so that those parameters miss the gradient of some steps."""

    without_gradient: list[str]
    random_layer_skips: list[str]


def gradient_coverage(model: nn.Module, loss_of: Callable[[nn.Module], torch.Tensor]) -> GradientCoverage:
    """Run ``loss_of(model).backward()`` once in training mode and report what it left out.

    Layer dropping is off for that pass (a layer it happened to skip is not a parameter the
    forward cannot use); the modules that drop layers are reported instead. The model is left as
    found: gradients, buffers (BatchNorm statistics), train/eval modes, layerdrop rates and the
    random number generators' states.
    """
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    grads = [p.grad for _, p in trainable]
    modes = [(module, module.training) for module in model.modules()]
    buffers = [(buffer, buffer.detach().clone()) for buffer in model.buffers()]
    model.train()
    dropping = [(name, module) for name, module in model.named_modules()
                if module.training and getattr(module, "layerdrop", 0) > 0
                and any(p.requires_grad for p in module.parameters())]
    rates = [module.layerdrop for _, module in dropping]
    devices = sorted({p.device.index or 0 for _, p in trainable if p.device.type == "cuda"})
    try:
        for _, module in dropping:
            module.layerdrop = 0.0
        for _, p in trainable:
            p.grad = None
        with torch.random.fork_rng(devices=devices):
            loss_of(model).backward()
        missing = [name for name, p in trainable if p.grad is None]
    finally:
        for (_, module), rate in zip(dropping, rates):
            module.layerdrop = rate
        for (_, p), grad in zip(trainable, grads):
            p.grad = grad
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)
        for module, mode in modes:
            module.training = mode
    return GradientCoverage(missing, [name for name, _ in dropping])
