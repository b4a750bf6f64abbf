import pytest
import torch

from data_helpers import cfg_for, remdinet_tree
from remdinet.config import ConfigError
from remdinet.data import AUTO_WORKERS, Feeding, build_data, feeding, make_loader
from remdinet.data.feeding import MAX_AUTO_WORKERS, auto_workers
from remdinet.resolve import resolve


def test_the_default_num_workers_is_auto_and_below_it_is_rejected():
    assert resolve({}).training.num_workers == AUTO_WORKERS
    with pytest.raises(ConfigError, match="training.num_workers"):
        resolve({"training.num_workers": -2})


@pytest.mark.parametrize("cpus", [1, 2, 16, 128])
def test_auto_is_no_worker_process_on_cpu_whatever_the_cpu_count(cpus):
    assert auto_workers("cpu", cpus) == 0


@pytest.mark.parametrize("cpus,expected", [(1, 1), (2, 1), (4, 2), (8, 4), (128, MAX_AUTO_WORKERS)])
def test_auto_on_cuda_is_at_least_one_worker_and_at_most_half_the_cpus_up_to_the_cap(cpus,
                                                                                     expected):
    assert auto_workers("cuda", cpus) == expected


def test_auto_on_cpu_feeds_from_the_main_process_without_pinned_memory():
    assert feeding(AUTO_WORKERS, "cpu", cpus=16) == Feeding(0, pin_memory=False,
                                                             persistent_workers=False)


def test_auto_on_cuda_pins_memory_and_keeps_its_workers_across_epochs():
    assert feeding(AUTO_WORKERS, "cuda", cpus=16) == Feeding(4, pin_memory=True,
                                                              persistent_workers=True)


def test_an_explicit_worker_count_is_kept_and_workers_persist_only_when_there_are_some():
    assert feeding(2, "cpu") == Feeding(2, pin_memory=False, persistent_workers=True)
    assert feeding(0, "cuda") == Feeding(0, pin_memory=True, persistent_workers=False)


def test_make_loader_applies_the_feeding_of_the_device_it_is_given(tmp_path):
    remdinet_tree(tmp_path, n=3, val=1)
    cfg = cfg_for(tmp_path, training__num_workers=AUTO_WORKERS)
    dataset = build_data(cfg).train
    cpu = make_loader(dataset, cfg, train=True, device=torch.device("cpu"))
    assert (cpu.num_workers, cpu.pin_memory, cpu.persistent_workers) == (0, False, False)
    # building a loader for CUDA needs no CUDA device; only iterating it would
    cuda = make_loader(dataset, cfg, train=True, device="cuda")
    assert cuda.num_workers > 0 and cuda.pin_memory and cuda.persistent_workers


@pytest.mark.parametrize("workers", [0, 2])
def test_iterating_the_loader_leaves_the_global_torch_rng_untouched(tmp_path, workers):
    # the model's random stream (mask dither) must not depend on num_workers or on whether the
    # workers persist, or an exact resume would not be exact
    remdinet_tree(tmp_path, n=4, val=1)
    cfg = cfg_for(tmp_path, training__num_workers=workers)
    loader = make_loader(build_data(cfg).train, cfg, train=True)
    before = torch.get_rng_state()
    for _ in range(2):
        assert sum(len(b["name"]) for b in loader) == 4
    assert torch.equal(torch.get_rng_state(), before)
