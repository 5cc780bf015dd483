"""Sending under the server's limits: the limiter and lock gate, the journal, the worker pool."""
