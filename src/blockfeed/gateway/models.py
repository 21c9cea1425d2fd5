"""Response models: they document the API in the OpenAPI schema and fix the JSON shapes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """Every 4xx/503 body: one sentence saying what is wrong and what to do."""

    detail: str


class HealthOut(BaseModel):
    status: str = Field(examples=["ok"])


class ReadyOut(BaseModel):
    ready: bool
    reason: str = Field(examples=["streaming: last block #6940429"])


class BlockOut(BaseModel):
    """A finalized block as the gateway serves it (same JSON as the SSE ``block`` event)."""

    number: int = Field(ge=0)
    hash: str
    parent_hash: str
    source: str = Field(examples=["ws", "poll", "backfill"])
    received_at: float
    delivered_at: float | None = Field(
        None, description="Unix time the feed handed the block to subscribers")
    epoch: int | None = None
    block_in_epoch: int | None = None
    state_root: str | None = None
    extrinsics_root: str | None = None
    # Contents (``serve --contents``); null when the gateway fetches headers only.
    timestamp: int | None = Field(None, description="ms, Timestamp.Now")
    spec_version: int | None = None
    events: list[dict[str, Any]] | None = None
    extrinsics: list[dict[str, Any]] | None = None


class BlocksPageOut(BaseModel):
    """Consecutive blocks from ``from``; ``next`` is where the following page starts."""

    from_: int = Field(alias="from")
    count: int
    limit: int
    first_available: int
    last_available: int
    next: int | None
    blocks: list[BlockOut]

    model_config = {"populate_by_name": True}


class AcceptedOut(BaseModel):
    status: str = Field(examples=["accepted"])
    action: str


StatusOut = dict[str, Any]
