"""Segue's client SDK: submit jobs, follow their progress, get their results.

```python
async with SegueClient() as client:
    job = await client.submit("energy_plan", {"horizon_years": 5})
    async for update in job.updates():
        print(update)
    result = await job.result()
```

Depends on :mod:`segue.protocol` and :mod:`segue.broker` only.
"""

from segue.client.client import SegueClient, finished_from_view
from segue.client.errors import (
    BrokerUnavailableError,
    ForbiddenError,
    JobRejectedError,
    NotConnectedError,
    PublishError,
    RequestFailedError,
    RequestTimeoutError,
    UpdateTimeoutError,
)
from segue.client.handle import JobHandle
from segue.client.identity import SEGUE_IDEMPOTENCY_NAMESPACE, job_id_for_key

__all__ = [
    "SEGUE_IDEMPOTENCY_NAMESPACE",
    "BrokerUnavailableError",
    "ForbiddenError",
    "JobHandle",
    "JobRejectedError",
    "NotConnectedError",
    "PublishError",
    "RequestFailedError",
    "RequestTimeoutError",
    "SegueClient",
    "UpdateTimeoutError",
    "finished_from_view",
    "job_id_for_key",
]
