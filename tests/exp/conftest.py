"""Fixtures of the experiment-layer tests: throw-away MLflow and Optuna stores."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def tracking_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.fixture
def storage_url(tmp_path):
    return f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"


@pytest.fixture
def one_thread():
    """End-to-end runs train many tiny models; on a shared 2-core machine one intra-op thread
    avoids oversubscription (the root conftest sets two)."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(2)
