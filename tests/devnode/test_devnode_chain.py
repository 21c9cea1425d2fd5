"""The chain model, sans-I/O: real hashes, parent links, determinism, GRANDPA-like finality."""

from __future__ import annotations

from collections import Counter

import pytest

from blockfeed.codec import block_hash, decode_compact, encode_header, header_from_json
from blockfeed.devnode.chain import SLOT_BASE, Chain


def _chain(**overrides: object) -> Chain:
    values: dict[str, object] = {
        "seed": 1,
        "start_block": 6_940_000,
        "finality_lag": 2,
        "finality_jumps": 0.0,
    }
    values.update(overrides)
    return Chain(**values)  # type: ignore[arg-type]


def test_starts_with_finalized_at_start_block_and_best_lag_ahead() -> None:
    """A fresh chain has finalized == start_block and best == start_block + finality_lag."""
    chain = _chain(finality_lag=3)
    assert chain.finalized_number == 6_940_000
    assert chain.best_number == 6_940_003


def test_headers_are_parent_linked_and_hashed_like_a_node() -> None:
    """Each header's parentHash is the previous block's blake2b hash, through the JSON codec."""
    chain = _chain()
    for _ in range(20):
        chain.tick()
    for number in range(chain.start_block + 1, chain.best_number + 1):
        header = header_from_json(chain.header_of(number).to_json())
        assert header.number == number
        assert "0x" + header.parent_hash.hex() == chain.hash_of(number - 1)
        assert block_hash(header) == chain.hash_of(number)


def test_digest_has_aura_pre_runtime_slot_and_64_byte_seal() -> None:
    """Digest logs are a PreRuntime aura slot (u64 LE) and a 64-byte aura Seal."""
    chain = _chain()
    pre_runtime, seal = chain.header_of(chain.best_number).digest_logs
    assert pre_runtime[:5] == b"\x06aura"
    length, offset = decode_compact(pre_runtime, 5)
    assert length == 8
    assert int.from_bytes(pre_runtime[offset:], "little") == SLOT_BASE + chain.best_number
    assert seal[:5] == b"\x05aura"
    length, offset = decode_compact(seal, 5)
    assert length == 64 and len(seal) - offset == 64


def test_same_seed_same_chain_other_seed_other_chain() -> None:
    """Hashes (genesis included) are a pure function of the config."""
    first, second, other = _chain(), _chain(), _chain(seed=2)
    for chain in (first, second, other):
        for _ in range(5):
            chain.tick()
    assert first.genesis_hash == second.genesis_hash != other.genesis_hash
    assert first.best_hash == second.best_hash != other.best_hash


def test_virtual_blocks_and_genesis() -> None:
    """Only genesis and start_block..best are served; the start block's parent is virtual."""
    chain = _chain()
    assert chain.has(0) and chain.header_of(0).number == 0
    assert block_hash(chain.header_of(0)) == chain.genesis_hash
    assert not chain.has(chain.start_block - 1)
    assert not chain.has(chain.best_number + 1)
    with pytest.raises(LookupError, match="not served"):
        chain.hash_of(chain.start_block - 1)
    start_parent = "0x" + chain.header_of(chain.start_block).parent_hash.hex()
    assert chain.number_of(start_parent) is None
    assert chain.number_of(chain.genesis_hash) == 0


def test_start_block_one_links_to_genesis() -> None:
    """With start_block=1 the chain is complete: block 1's parent is the genesis hash."""
    chain = _chain(start_block=1)
    assert "0x" + chain.header_of(1).parent_hash.hex() == chain.genesis_hash


def test_number_of_finds_every_block_and_rejects_junk() -> None:
    """The compact hash index maps every stored hash back to its number."""
    chain = _chain()
    for _ in range(3000):
        chain.tick()
    for number in range(chain.start_block, chain.best_number + 1, 7):
        assert chain.number_of(chain.hash_of(number)) == number
    assert chain.number_of("0x" + "ab" * 32) is None
    assert chain.number_of("0xnothex") is None
    assert chain.number_of(b"short") is None


def test_finality_without_jumps_moves_one_block_per_tick() -> None:
    """finality_jumps=0: every tick finalizes exactly one block, lag stays constant."""
    chain = _chain()
    for _ in range(50):
        tick = chain.tick()
        assert tick.finalized_from == tick.finalized_to == chain.finalized_number
        assert chain.best_number - chain.finalized_number == 2


def test_finality_jumps_finalize_two_to_four_blocks_at_once() -> None:
    """With jumps, some steps finalize 2-4 blocks; never more, never past best - lag."""
    chain = _chain(finality_jumps=0.3)
    sizes: Counter[int] = Counter()
    for _ in range(2000):
        tick = chain.tick()
        assert chain.finalized_number <= chain.best_number - chain.finality_lag
        if tick.finalized_to is not None:
            assert tick.finalized_from is not None
            sizes[tick.finalized_to - tick.finalized_from + 1] += 1
    assert set(sizes) == {1, 2, 3, 4}
    assert sizes[1] > sizes[2] > 0


def test_halted_finality_catches_up_in_one_step() -> None:
    """While halted best grows and finalized stays; the next step finalizes everything due."""
    chain = _chain()
    before = chain.finalized_number
    for _ in range(10):
        assert chain.tick(finality_halted=True).finalized_to is None
    assert chain.finalized_number == before
    tick = chain.tick()
    assert tick.finalized_from == before + 1
    assert tick.finalized_to == chain.best_number - 2


def test_a_long_chain_stays_compact() -> None:
    """30,000 blocks take ~1.7 MB of hash storage and index, not a dict of headers."""
    chain = _chain()
    for _ in range(30_000):
        chain.tick()
    stored = len(chain._hashes) + chain._index._keys.itemsize * len(chain._index._keys)
    stored += chain._index._values.itemsize * len(chain._index._values)
    assert stored < 100 * 30_000
    assert len(encode_header(chain.header_of(chain.best_number))) < 300


@pytest.mark.parametrize("same_genesis", [True, False])
def test_replace_starts_over_in_place(same_genesis: bool) -> None:
    """replace(): numbering restarts at start_block, block 1 links to block 0, old hashes are
    unknown, block 0 is kept only with the same genesis seed."""
    chain = _chain()
    for _ in range(5):
        chain.tick()
    old_genesis, old_head = chain.genesis_hash, chain.finalized_hash
    chain.replace(seed=99, genesis_seed=1 if same_genesis else 99, start_block=1)
    assert (chain.generation, chain.start_block, chain.finalized_number) == (1, 1, 1)
    assert chain.best_number == 1 + chain.finality_lag
    assert (chain.genesis_hash == old_genesis) is same_genesis
    assert chain.number_of(old_head) is None
    assert "0x" + chain.header_of(1).parent_hash.hex() == chain.genesis_hash
    chain.tick()
    assert "0x" + chain.header_of(chain.best_number).parent_hash.hex() == chain.hash_of(
        chain.best_number - 1
    )
