"""Garbage collection and retention, online: `cargobay gc` and the scheduled run of `serve`.

`collect` runs one collection under the storage lease (`lease`); `inventory`
walks storage, `references` reads what a manifest keeps alive, `retention`
decides which tags go, `pulls` records pull times for it, `schedule` runs
collections in a server. See `collector` for the order of a run and why it is
safe while pushes go on.
"""

from __future__ import annotations

from registry.gc.collector import GcOptions, LeaseLost, collect
from registry.gc.lease import Lease, LeaseHeld
from registry.gc.report import GcReport

__all__ = ["GcOptions", "GcReport", "Lease", "LeaseHeld", "LeaseLost", "collect"]
