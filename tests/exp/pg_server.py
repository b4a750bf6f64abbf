"""The test PostgreSQL server (``REMDINET_TEST_PG_URL``; ``scripts/pg_test_server.sh start``
prints it and ``.ci/run`` starts one). An empty value counts as unset."""
from __future__ import annotations

import os

import pytest

PG_URL = os.environ.get("REMDINET_TEST_PG_URL") or None
needs_server = pytest.mark.skipif(
    PG_URL is None, reason="REMDINET_TEST_PG_URL is not set (start a server with "
                           "scripts/pg_test_server.sh start; .ci/run does)")
