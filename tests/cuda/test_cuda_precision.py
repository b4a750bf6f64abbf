"""One forward + stage-2 loss + backward of the tiny model on CUDA, in fp32 and under bf16 and fp16
autocast, against the same pass on the CPU in fp32: same weights, input and target.

Tolerances. The same pass on the CPU under autocast (oneDNN kernels, the same dtypes) differs from
the CPU fp32 pass by (max |Δ enhanced| / |Δ loss| relative / ‖Δ grad‖ relative): bf16 8.4e-4 /
5.6e-5 / 9.9e-4, fp16 (loss scaled by 2^10) 9.2e-5 / 1.2e-4 / 6.0e-4; fp32 on 1 against 2 CPU
threads (another summation order) 4.2e-7 / 0 / 6.9e-7. The bounds below leave about 10x for
cuDNN's other kernels and summation orders (fp32 more: cuDNN may pick Winograd or FFT
convolutions). TF32, cuDNN's default for fp32 convolutions on Ampere and later, rounds the inputs
to 10 mantissa bits, finer than bf16's 7: the bf16 bounds hold for it. A broken CUDA path (an op
run in the wrong dtype, a lost cast, a device mix-up) misses them by orders of magnitude.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest
import torch

from cuda_helpers import CUDA
from remdinet.colour import denormalize, normalize
from remdinet.fixes import fixes_of
from remdinet.losses import build_stage_loss
from remdinet.model import build_model
from remdinet.training.device import autocast
from remdinet.training.optim import build_optimizer
from tiny_setup import tiny_config

pytestmark = CUDA

# GradScaler's default initial scale (2^16) overflows on the first backward, which the trainer's
# loop absorbs by skipping the step; one pass cannot, so it starts where no gradient overflows
# fp16 and the per-pixel gradients of the mean losses (about 1e-5) do not underflow it.
FP16_SCALE = 2.0 ** 10


@dataclass(frozen=True)
class Bounds:
    enhanced: float  # max |Δ| of the enhanced image, values in [0, 1]
    loss: float  # |Δ| / |loss|
    grad: float  # ‖Δ‖ / ‖grad‖ over every trainable parameter


@dataclass
class Pass:
    enhanced: torch.Tensor
    loss: float
    grad: torch.Tensor  # every parameter gradient, flattened, on the CPU in fp32


CASES = {
    "fp32": (None, False, Bounds(enhanced=1e-4, loss=1e-4, grad=1e-3)),
    "fp32-tf32": (None, True, Bounds(enhanced=1e-2, loss=1e-3, grad=2e-2)),
    "bf16": (torch.bfloat16, False, Bounds(enhanced=1e-2, loss=1e-3, grad=2e-2)),
    "fp16": (torch.float16, False, Bounds(enhanced=2e-3, loss=2e-3, grad=1e-2)),
}


@pytest.fixture(scope="module")
def setup():
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg)
    g = torch.Generator().manual_seed(0)
    x = normalize(torch.rand(2, 3, 64, 64, generator=g) * 0.3)
    target = torch.rand(2, 3, 64, 64, generator=g)
    return cfg, model, x, target


@pytest.fixture
def tf32(request):
    """Sets cuDNN's and cuBLAS's TF32 switches for one test and restores them afterwards."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = request.param
    yield request.param
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def one_pass(setup, device: torch.device, dtype: torch.dtype | None) -> Pass:
    cfg, model, x, target = setup
    model = copy.deepcopy(model).to(device).train()
    # the train-time dither draws from each device's own generator, so it cannot match
    model.mask_predictor.dither_std = 0.0
    loss_fn = build_stage_loss(2, cfg, fixes_of(cfg), model).to(device)
    x, target = x.to(device), target.to(device)
    scaler = torch.amp.GradScaler("cuda", init_scale=FP16_SCALE, enabled=dtype == torch.float16)
    optimizer = build_optimizer(model, cfg)  # unscale_ reaches the gradients through it
    with autocast(device, dtype):
        out = model(x)
        total = loss_fn(out, target, denormalize(x)).total
    scaler.scale(total).backward()
    scaler.unscale_(optimizer)
    grads = [p.grad.float().flatten() for p in model.parameters() if p.grad is not None]
    return Pass(out["enhanced"].detach().float().cpu(), float(total.detach()),
                torch.cat(grads).cpu())


@pytest.fixture(scope="module")
def cpu_fp32(setup):
    return one_pass(setup, torch.device("cpu"), None)


@pytest.mark.parametrize("case,tf32", [(name, allow) for name, (_, allow, _) in CASES.items()],
                         indirect=["tf32"], ids=list(CASES))
def test_a_cuda_forward_and_backward_matches_the_cpu_fp32_pass_within_the_precisions_bounds(
        setup, cpu_fp32, case, tf32):
    dtype, _, bounds = CASES[case]
    cuda = one_pass(setup, torch.device("cuda"), dtype)
    assert torch.isfinite(cuda.enhanced).all() and torch.isfinite(cuda.grad).all()
    assert cuda.grad.shape == cpu_fp32.grad.shape  # the same parameters received gradients
    assert (cuda.enhanced - cpu_fp32.enhanced).abs().max() <= bounds.enhanced
    assert abs(cuda.loss - cpu_fp32.loss) <= bounds.loss * abs(cpu_fp32.loss)
    assert (cuda.grad - cpu_fp32.grad).norm() <= bounds.grad * cpu_fp32.grad.norm()
