"""Only the two optional C kernels live here; everything else is in pyproject.toml.

- ``shared._fastbeta``: exact Beta draws for Thompson sampling (fallback: NumPy's Generator.beta);
- ``edge._rowmap``: item id -> row lookup (fallback: NumPy searchsorted over sorted hashes);
- ``streaming._murmur2``: Kafka's key partitioner for the ingest's batched produce (fallback: aiokafka's
  pure-Python murmur2, same partitions).

``optional=True``: a machine without a C compiler still installs Strata and gets the NumPy fallbacks
(same answers and distributions, slower). ``shared.bandit.SAMPLER`` and ``edge.item_index.COMPILED`` say
which ones are in use; ``strata edge`` logs both at start.
"""

import sys

from setuptools import Extension, setup

_ARGS = [] if sys.platform == "win32" else ["-O3", "-std=c99", "-fno-math-errno"]

setup(ext_modules=[
    Extension("shared._fastbeta", ["shared/_fastbeta.c"], optional=True, extra_compile_args=_ARGS),
    Extension("edge._rowmap", ["edge/_rowmap.c"], optional=True, extra_compile_args=_ARGS),
    Extension("streaming._murmur2", ["streaming/_murmur2.c"], optional=True, extra_compile_args=_ARGS),
])
