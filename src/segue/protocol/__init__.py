"""The wire contract between clients, the orchestrator and workers.

Pure: pydantic message models, the codec that turns bytes into them, and the
names of every exchange, queue and routing key. No I/O happens here.
"""
