"""Packaging that pyproject.toml cannot say statically: the namespace mapping and the optional C kernels.

The repository keeps the design card's top-level folders (``edge/``, ``streaming/``, ...); they install as
``strata.edge``, ``strata.streaming``, ... (``strata`` is a namespace with no ``__init__``), so nothing with a
generic name like ``shared`` lands in site-packages. ``tests/unit/test_packaging.py`` builds the wheel and checks it.

The optional C kernels:
- ``strata.shared.ranking._fastbeta``: exact Beta draws for Thompson sampling (fallback: NumPy's Generator.beta);
- ``strata.shared.ranking._rowmap``: item id -> row lookup (fallback: NumPy searchsorted over sorted hashes);
- ``strata.shared.ranking._walk``: the ranking kernel's selection walk (fallback: the same walk in Python);
- ``strata.streaming._murmur2``: Kafka's key partitioner for the ingest's batched produce (fallback: aiokafka's
  pure-Python murmur2, same partitions);
- ``strata.streaming._jsonspans``: the offsets of a JSON array's elements, so the ingest checks the event limit
  and splits a body into events before decoding any (fallback: the same scan with ``re``, slower).

``optional=True``: a machine without a C compiler still installs Strata and gets the NumPy fallbacks
(same answers and distributions, slower). ``strata.shared.ranking.bandit.SAMPLER`` and ``strata.shared.ranking.row_map.COMPILED``
say which ones are in use; ``strata edge`` logs both at start.
"""

import sys

from setuptools import Extension, find_packages, setup

FOLDERS = ("edge", "streaming", "origin", "model_export", "shared", "loadtest", "deploy")

PACKAGES = [f"strata.{top}" + (f".{sub}" if sub else "")
            for top in FOLDERS for sub in ("", *find_packages(top))]
PACKAGE_DIR = {f"strata.{top}": top for top in FOLDERS}

_ARGS = [] if sys.platform == "win32" else ["-O3", "-std=c99", "-fno-math-errno"]

setup(
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    ext_modules=[
        Extension("strata.shared.ranking._fastbeta", ["shared/ranking/_fastbeta.c"], optional=True, extra_compile_args=_ARGS),
        Extension("strata.shared.ranking._rowmap", ["shared/ranking/_rowmap.c"], optional=True, extra_compile_args=_ARGS),
        Extension("strata.shared.ranking._walk", ["shared/ranking/_walk.c"], optional=True, extra_compile_args=_ARGS),
        Extension("strata.streaming._murmur2", ["streaming/_murmur2.c"], optional=True, extra_compile_args=_ARGS),
        Extension("strata.streaming._jsonspans", ["streaming/_jsonspans.c"], optional=True, extra_compile_args=_ARGS),
    ],
)
