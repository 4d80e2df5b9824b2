"""sierradb.client: the Python client, synchronous (`Client`) and asyncio (`AsyncClient`).

```python
from sierradb.client import Client, ExpectedVersion

with Client("127.0.0.1:9090") as db:
    db.append("account-1", "Opened", b'{"owner": "Alice"}', expected_version=ExpectedVersion.EMPTY)
    for event in db.scan_stream("account-1"):
        print(event.stream_version, event.event_name, event.payload)
```
"""

from .aggregate import Aggregate, AsyncRepository, CommandResult, Repository
from .aio import AsyncClient, AsyncSubscription
from .errors import (
    AuthenticationRequired,
    ClusterDown,
    ConnectionFailed,
    DatabaseOperationFailed,
    Denied,
    Duplicate,
    GenericError,
    InsufficientReplicas,
    InvalidArgument,
    NotFound,
    NotLeader,
    QuorumFailed,
    ReadFailed,
    ServerError,
    SierraDBError,
    SubscriptionGap,
    Timeout,
    TryAgain,
    UnsupportedProtocol,
    WriteFailed,
    WrongExpectedVersion,
    WrongPassword,
)
from .identifiers import new_event_id, partition_id, partition_key_for_stream
from .retry import RetryPolicy
from .sync import Client, Subscription
from .types import (
    AppendedEvent,
    AppendResult,
    Event,
    ExpectedVersion,
    MultiAppendResult,
    NewEvent,
    ScanPage,
)

__all__ = [
    "Aggregate",
    "AppendResult",
    "AppendedEvent",
    "AsyncClient",
    "AsyncRepository",
    "AsyncSubscription",
    "AuthenticationRequired",
    "Client",
    "ClusterDown",
    "CommandResult",
    "ConnectionFailed",
    "DatabaseOperationFailed",
    "Denied",
    "Duplicate",
    "Event",
    "ExpectedVersion",
    "GenericError",
    "InsufficientReplicas",
    "InvalidArgument",
    "MultiAppendResult",
    "NewEvent",
    "NotFound",
    "NotLeader",
    "QuorumFailed",
    "ReadFailed",
    "Repository",
    "RetryPolicy",
    "ScanPage",
    "ServerError",
    "SierraDBError",
    "Subscription",
    "SubscriptionGap",
    "Timeout",
    "TryAgain",
    "UnsupportedProtocol",
    "WriteFailed",
    "WrongExpectedVersion",
    "WrongPassword",
    "new_event_id",
    "partition_id",
    "partition_key_for_stream",
]
