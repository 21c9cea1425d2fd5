"""Epochs: fixed-length and real per-subnet schedules, and the monitor that fires epoch triggers.

``EpochSchedule(360).format_position(6940429)`` is ``"Epoch 19278 | Block 349/360"``;
``SubnetEpochSchedule(netuid, rpc)`` asks the chain; ``EpochMonitor(schedule, store)`` runs named
triggers exactly once per process and at least once across crashes (see its module docs).
"""

from blockfeed.epochs.monitor import EpochMonitor, TriggerContext
from blockfeed.epochs.schedule import DEFAULT_EPOCH_LENGTH, EpochSchedule, EpochSpan, Schedule
from blockfeed.epochs.subnet import SubnetEpochSchedule

__all__ = [
    "DEFAULT_EPOCH_LENGTH",
    "EpochMonitor",
    "EpochSchedule",
    "EpochSpan",
    "Schedule",
    "SubnetEpochSchedule",
    "TriggerContext",
]
