"""Shared fixtures: the tiny configuration (``tiny_setup.tiny_config``), seeding and threads."""
from __future__ import annotations

import logging

import pytest
import torch

from remdinet.config import Config
from tiny_setup import tiny_config


@pytest.fixture
def logged(caplog):
    """Records of the ``remdinet`` loggers (INFO and up) during the test: ``logged.messages``."""
    caplog.set_level(logging.INFO, logger="remdinet")
    return caplog


@pytest.fixture
def tiny_cfg() -> Config:
    return tiny_config()


@pytest.fixture(autouse=True)
def _seed_and_threads():
    """Every test starts from the same RNG state; two threads keep the shared machine usable."""
    torch.manual_seed(0)
    torch.set_num_threads(2)
    yield


@pytest.fixture
def one_thread():
    """End-to-end runs train many tiny models; on a shared 2-core machine one intra-op thread
    avoids oversubscription (the autouse fixture above sets two)."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(2)


@pytest.fixture
def tracking_uri(tmp_path):
    """A throw-away MLflow store."""
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.fixture
def storage_url(tmp_path):
    """A throw-away Optuna store beside it."""
    return f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
