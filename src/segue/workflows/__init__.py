"""Workflow definitions: the model of ``workflow_config.json``, loading, lint,
parameter schemas and branch conditions. Pure: no I/O beyond reading the file
in :mod:`segue.workflows.loader`.
"""
