"""The real engines and processes behind ``strata.loadtest.launch.Launcher``: what the CLI hands the benchmarks."""

from __future__ import annotations

from strata.deploy.local import ManagedProcess, ValkeyProcess, strata_command
from strata.deploy.tansu import TansuProcess
from strata.loadtest.launch import Launcher

LAUNCHER = Launcher(store=ValkeyProcess, broker=TansuProcess, process=ManagedProcess, command=strata_command)
