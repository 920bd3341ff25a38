"""Only the optional compiled Beta sampler lives here; everything else is in pyproject.toml.

``optional=True``: a machine without a C compiler still installs Strata, and shared.bandit falls back to
NumPy's Beta sampler (same distribution, slower). ``python -c "import shared.bandit as b; print(b.SAMPLER)"``
says which one is in use.
"""

import sys

from setuptools import Extension, setup

_ARGS = [] if sys.platform == "win32" else ["-O3", "-std=c99", "-fno-math-errno"]

setup(ext_modules=[Extension("shared._fastbeta", ["shared/_fastbeta.c"], optional=True, extra_compile_args=_ARGS)])
