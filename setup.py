"""The optional C accelerator (massive_rt/_speedups.c); everything else is declared in setup.cfg.

``optional=True``: without a working C compiler the build prints a warning and the package
installs without it, falling back to pure Python (see docs/performance.md, "The accelerator").
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("massive_rt._speedups", sources=["massive_rt/_speedups.c"], optional=True)])
