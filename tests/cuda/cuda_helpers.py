"""The skip condition of the CUDA tests (``from cuda_helpers import CUDA``)."""
from __future__ import annotations

import pytest
import torch

NO_CUDA_REASON = (f"needs a CUDA device: torch.cuda.is_available() is False (torch "
                  f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'})")

# every CUDA test module sets ``pytestmark = CUDA``: selected by ``-m cuda``, skipped with the
# reason where there is no device
CUDA = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA_REASON)]
