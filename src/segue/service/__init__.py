"""The orchestrator process: message handlers, outbox relay, timer sweeper and
the composition root that wires them to RabbitMQ and Postgres.
"""
