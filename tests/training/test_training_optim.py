import pytest
import torch

from tiny_setup import tiny_config
from remdinet.model import build_model
from remdinet.training.optim import (build_optimizer, cosine_scheduler, group_lr, group_of,
                                     plateau_scheduler, restore_scheduler, scheduler_state)


def test_groups_are_chosen_by_name_substring():
    assert group_of("curve_estimator.net.0.weight") == "curve"
    assert group_of("mask_predictor.net.4.bias") == "mask"
    assert group_of("semantic.backbone.features.0.0.weight") == "other"


def test_every_parameter_is_in_a_group_frozen_ones_included():
    cfg = tiny_config()
    model = build_model(cfg)
    opt = build_optimizer(model, cfg)
    in_groups = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_groups == {id(p) for p in model.parameters()}
    assert any(not p.requires_grad for p in model.parameters())  # the frozen backbone layers
    assert [g["name"] for g in opt.param_groups] == ["curve", "mask", "other"]
    assert group_lr(opt, "curve") == cfg.optim.lr_curve
    assert group_lr(opt, "other") == cfg.optim.lr_other
    assert all(g["weight_decay"] == cfg.optim.weight_decay for g in opt.param_groups)


def test_pre_fix_other_lr_is_1e_5():
    cfg = tiny_config({"fixes.profile": "pre_fix"})
    assert group_lr(build_optimizer(build_model(cfg), cfg), "other") == 1e-5


def test_lr_scale_multiplies_every_group_and_keeps_the_pre_fix_ratio():
    for profile in ("post_fix", "pre_fix"):
        cfg = tiny_config({"fixes.profile": profile, "optim.lr_scale": 10.0})
        opt = build_optimizer(build_model(cfg), cfg)
        assert group_lr(opt, "curve") == pytest.approx(10 * cfg.optim.lr_curve)
        assert group_lr(opt, "mask") == pytest.approx(10 * cfg.optim.lr_mask)
        assert group_lr(opt, "other") == pytest.approx(10 * cfg.optim.lr_other)


def test_cosine_scheduler_anneals_recursively_from_the_current_lr():
    cfg = tiny_config({"training.num_epochs": 30})
    opt = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-4, "name": "curve"}])
    opt.param_groups[0]["lr"] = 5e-5  # e.g. changed by the mask unfreeze
    sched = cosine_scheduler(opt, cfg, epoch=10)
    assert sched.T_max == 20
    opt.step()
    sched.step()
    expected = (1 + torch.cos(torch.tensor(torch.pi / 20))) / 2 * (5e-5 - 1e-6) + 1e-6
    assert group_lr(opt, "curve") == pytest.approx(float(expected), rel=1e-6)


def test_cosine_t_max_is_at_least_ten():
    cfg = tiny_config({"training.num_epochs": 12})
    opt = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1e-4, "name": "x"}])
    assert cosine_scheduler(opt, cfg, epoch=8).T_max == 10


@pytest.mark.parametrize("kind", ["plateau", "cosine"])
def test_scheduler_state_round_trip_continues_identically(kind):
    cfg = tiny_config({"training.num_epochs": 40})

    def fresh():
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([{"params": [p], "lr": 1e-3, "name": "curve"}])
        return opt, (plateau_scheduler(opt, cfg) if kind == "plateau" else cosine_scheduler(opt, cfg, 0))

    def advance(opt, sched, n):
        for i in range(n):
            opt.step()
            sched.step(10.0) if kind == "plateau" else sched.step()

    opt, sched = fresh()
    advance(opt, sched, 12)
    saved_opt, saved_sched = opt.state_dict(), scheduler_state(sched)
    advance(opt, sched, 5)
    opt2, _ = fresh()
    opt2.load_state_dict(saved_opt)
    sched2 = restore_scheduler(opt2, cfg, saved_sched)
    advance(opt2, sched2, 5)
    assert group_lr(opt2, "curve") == group_lr(opt, "curve")
