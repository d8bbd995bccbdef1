"""The aio-pika layer: connections, topology declaration, confirmed publishing
and the one consume boundary. Imports aio-pika only (no database), so the
worker and client SDKs use it too.
"""
