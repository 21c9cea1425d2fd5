"""Running blockfeed as a service: systemd integration (``blockfeed.ops.systemd``)."""
