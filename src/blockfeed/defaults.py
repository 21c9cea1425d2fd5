"""Chain defaults every layer shares, defined once (a leaf module: it imports nothing).

Bittensor's finney: a 12 s block (the runtime's Aura slot) and 360-block epochs (a subnet's
tempo; the SDK's default). Everything that needs one of these imports it from here: the
core's prior, the feed, the CLI, the gateway's settings, the epoch schedule, devnode.
"""

BLOCK_TIME_S = 12.0
"""The block time assumed when nothing is told and the runtime declares no slot duration."""
EPOCH_LENGTH = 360
"""Blocks per epoch when none is given."""
