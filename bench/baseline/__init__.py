"""A bare model of Segue's design, the floor the benchmark compares Segue with.

One orchestrator process consumes submissions and step results; for every step
it runs ONE database transaction (insert or advance the job row) and ONE
persistent, confirmed publish (the next task or the result). No history, no
outbox, no fencing beyond the step number, no validation: only the work this
design cannot avoid. Workers consume a task and publish its result (persistent,
confirmed); the client publishes submissions and waits for results.
"""
