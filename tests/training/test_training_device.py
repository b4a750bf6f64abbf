import pytest
import torch

from remdinet.training.device import wants_cudnn_benchmark


@pytest.fixture
def deterministic_algorithms():
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


def test_cudnn_autotuning_is_chosen_on_cuda_for_fixed_sizes():
    # a torch.device("cuda") can be named without a CUDA device present
    assert wants_cudnn_benchmark(torch.device("cuda"), fixed_sizes=True)


def test_cudnn_autotuning_is_not_chosen_on_cpu_or_for_varying_sizes():
    assert not wants_cudnn_benchmark(torch.device("cpu"), fixed_sizes=True)
    assert not wants_cudnn_benchmark(torch.device("cuda"), fixed_sizes=False)


@pytest.mark.usefixtures("deterministic_algorithms")
def test_cudnn_autotuning_is_not_chosen_when_deterministic_algorithms_are_requested():
    assert not wants_cudnn_benchmark(torch.device("cuda"), fixed_sizes=True)
