"""Segue's worker SDK: serve workflow steps from RabbitMQ.

```python
from segue.worker import StepContext, Worker, step_handler

@step_handler("simulate")
def simulate(ctx: StepContext) -> dict:
    for i in range(10):
        if ctx.cancelled:
            return {}
        ctx.progress(i / 10, "simulating")
        ...
    return {"unserved_mwh": 0.0}

worker = Worker(handlers=[simulate], concurrency=2)
```

Run it with ``segue worker run mymodule:worker``. Depends on
:mod:`segue.protocol` and :mod:`segue.broker` only (no database, no engine).
"""

from segue.broker.connection import BrokerUnavailableError
from segue.worker.app import Worker
from segue.worker.context import StepContext
from segue.worker.errors import InvalidOutputError
from segue.worker.handler import StepHandler, step_handler
from segue.worker.runner import load_worker, run_worker

__all__ = [
    "BrokerUnavailableError",
    "InvalidOutputError",
    "StepContext",
    "StepHandler",
    "Worker",
    "load_worker",
    "run_worker",
    "step_handler",
]
