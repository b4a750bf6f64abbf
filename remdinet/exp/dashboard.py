"""``remdi-exp dashboard``: optuna-dashboard over the project's Optuna storage (the optional
``[dashboard]`` extra).

It serves in this process, with the storage opened as every study opens it
(:func:`.engine.open_storage`), so a PostgreSQL password never appears on a command line.
"""
from __future__ import annotations

import importlib.util
import logging

from remdinet.config import ConfigError

from .engine import open_storage
from .stores import mask_url

_log = logging.getLogger(__name__)
EXTRA = "pip install 'remdinet[dashboard]'"


def serve(storage_url: str, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serve optuna-dashboard on ``host:port`` until Ctrl-C (bottle, its server, then returns)."""
    if importlib.util.find_spec("optuna_dashboard") is None:
        raise ConfigError(f"the dashboard needs optuna-dashboard, which is not installed: {EXTRA}")
    from optuna_dashboard import run_server

    storage = open_storage(storage_url)
    _log.info(f"optuna-dashboard at http://{host}:{port} over {mask_url(storage_url)}")
    run_server(storage, host=host, port=port)
