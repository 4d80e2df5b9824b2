"""sierradb.eventsourcing: a persistence module for the `eventsourcing` library.

Select it with `PERSISTENCE_MODULE=sierradb.eventsourcing` (and `SIERRADB_ADDRESSES=host:port`)
in the application's environment. Layout and semantics: `store.py`; settings: `factory.py`.
"""

from .factory import SierraDBFactory
from .recorders import (
    SierraDBAggregateRecorder,
    SierraDBApplicationRecorder,
    SierraDBProcessRecorder,
    SierraDBSubscription,
    SierraDBTrackingRecorder,
)

Factory = SierraDBFactory

__all__ = [
    "Factory",
    "SierraDBAggregateRecorder",
    "SierraDBApplicationRecorder",
    "SierraDBFactory",
    "SierraDBProcessRecorder",
    "SierraDBSubscription",
    "SierraDBTrackingRecorder",
]
