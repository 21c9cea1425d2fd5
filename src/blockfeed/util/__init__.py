"""Small helpers shared by several layers (redaction, clocks)."""
