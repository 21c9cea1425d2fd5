"""Where blocks go besides in-process subscribers.

:mod:`blockfeed.sinks.redis` publishes them into a Redis stream and reads them back (public
alias: :mod:`blockfeed.redis`).
"""
