"""Claiming queued trials: Optuna's WAITING trials, each started by exactly one worker, with no
helper study in the storage; the options object and the worker counts it allows; device
placement."""
from __future__ import annotations

import threading

import optuna
import pytest

from remdinet.config import ConfigError
from remdinet.exp.engine import EngineOptions, check_workers, open_storage, parse_gpus
from remdinet.exp.engine._devices import worker_envs
from remdinet.exp.engine._trial import claim


def test_waiting_trials_are_claimed_once_each_by_racing_workers(storage_url):
    study = optuna.create_study(study_name="s", storage=open_storage(storage_url))
    for i in range(12):
        study.enqueue_trial({}, user_attrs={"i": i})
    wins: list[int] = []
    lock = threading.Lock()

    def worker():
        storage = open_storage(storage_url)
        mine = optuna.load_study(study_name="s", storage=storage)
        study_id = storage.get_study_id_from_name("s")
        while (trial := claim(mine, storage, study_id)) is not None:
            with lock:
                wins.append(trial.user_attrs["i"])

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == list(range(12))
    storage = open_storage(storage_url)
    assert claim(study, storage, storage.get_study_id_from_name("s")) is None
    assert len(study.get_trials()) == 12  # nothing was created beside the queued trials
    assert optuna.get_all_study_names(storage) == ["s"]


@pytest.mark.parametrize("kwargs, message", [
    ({"workers": 0}, "--workers must be >= 1"),
    ({"gpus": (0, 0)}, "--gpus must list distinct device indices"),
    ({"heartbeat_interval": 5, "grace_period": 5}, "--grace-period (5 s) must be longer"),
    ({"timeout": 0}, "--timeout must be > 0"),
])
def test_engine_options_refuse_inconsistent_values(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EngineOptions(**kwargs)


def test_force_lets_workers_past_the_cores_and_memory_but_never_past_the_work():
    many = EngineOptions(workers=10_000)
    with pytest.raises(ConfigError, match=r"--workers 10000: this machine has .* --force"):
        check_workers(many, None, "trial(s)")
    forced = EngineOptions(workers=10_000, force=True)
    check_workers(forced, None, "trial(s)")  # --join or a timeout: no count to hold it to
    check_workers(forced, 10_000, "trial(s)")
    with pytest.raises(ConfigError, match=r"--workers 10000 is more than the 3 cell\(s\) to run"):
        check_workers(forced, 3, "cell(s)")


def test_workers_are_dealt_to_gpus_round_robin():
    assert worker_envs(5, (0, 1)) == [{"CUDA_VISIBLE_DEVICES": d} for d in "01010"]
    assert worker_envs(2, ()) == [{}, {}]
    assert parse_gpus("0,2,3") == (0, 2, 3)
    assert parse_gpus(None) is None
    with pytest.raises(ConfigError, match="--gpus expects device indices"):
        parse_gpus("0,x")
