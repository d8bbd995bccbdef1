"""The read-only jobs web page that ``segue serve`` serves when ``SEGUE_WEB_ENABLED``.

It shares the port of ``/healthz``, ``/readyz`` and ``/metrics`` (the WSGI
server of :mod:`segue.service.health`, in threads of its own, so a slow page
never delays a probe nor the orchestrator's event loop) and reads PostgreSQL
with psycopg2 in read-only transactions of its own small pool:

- :mod:`segue.web.reader`: the queries (the job list is :mod:`segue.store.listing`'s).
- :mod:`segue.web.timeline` and :mod:`segue.web.progress`: what a job page
  shows of the history, as pure functions.
- :mod:`segue.web.app`: the WSGI application, its routes and templates.

See docs/operator.md.
"""
