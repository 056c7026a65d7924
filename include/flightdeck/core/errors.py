"""The error family of user errors: a bad config, file, partition or request, never a bug.

The job runner (:func:`flightdeck.core.jobargs.run`) turns a :class:`FlightdeckError` into one
clear line and exit code 2; every other exception keeps its full traceback in the task log.
"""

from __future__ import annotations


class FlightdeckError(Exception):
    """Something the user can fix; the message says what and how."""


class MissingPartition(FlightdeckError):
    """An input partition or table is not committed yet: run the upstream stage for it first."""
