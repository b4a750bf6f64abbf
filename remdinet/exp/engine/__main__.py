"""Entry of a worker process (``python -m remdinet.exp.engine``, see :mod:`._processes`)."""
from ._processes import main

main()
