"""Fixtures of the experiment-layer tests: throw-away MLflow and Optuna stores."""
from __future__ import annotations

import pytest


@pytest.fixture
def tracking_uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.fixture
def storage_url(tmp_path):
    return f"sqlite:///{tmp_path / 'mlruns' / 'optuna.db'}"
