"""How the memory read is cut into tiles of query pixels: a pure function of static shapes.

The read compares every query pixel of a frame with every memory token (T frames of them), so
the similarity matrix grows with the square of the pixel count: 21 GB in float32 at 2160x3840.
Top-k and softmax are per query row, so the read can take the query pixels a tile at a time and
hold one tile's similarity at once. The tiles are chosen here, from the shapes alone, so that the
torch network, every export that traces it (where the loop unrolls statically) and the app's
up-front memory estimate agree on them.
"""

from __future__ import annotations

#: Budget for one tile's float32 similarity (rows x memory tokens x 4 bytes).
READ_TILE_BYTES = 256 * 2**20
#: No tile has fewer rows than this (unless the frame itself has fewer query pixels). Below about
#: 12 rows MKL's sgemm switches to kernels that round the sums differently, and the tiled read
#: would then no longer equal the untiled one bit for bit; with balanced tiles of at least half
#: this many rows it does.
MIN_TILE_ROWS = 32
#: Bytes per similarity element in float32.
SIMILARITY_BYTES = 4


def read_tile_rows(query_tokens: int, memory_tokens: int, budget: int = READ_TILE_BYTES) -> int:
    """The most query rows one tile may hold: whole frame when it fits the budget."""
    if query_tokens < 1 or memory_tokens < 1:
        raise ValueError(f"a read needs query and memory tokens, got {query_tokens} and {memory_tokens}")
    rows = max(MIN_TILE_ROWS, budget // (SIMILARITY_BYTES * memory_tokens))
    return min(query_tokens, rows)


def read_tiles(query_tokens: int, memory_tokens: int, budget: int = READ_TILE_BYTES) -> list[tuple[int, int]]:
    """(start, stop) of each tile over the query pixels: as few tiles as the budget allows, with
    sizes that differ by at most one row (no small remainder tile)."""
    most = read_tile_rows(query_tokens, memory_tokens, budget)
    count = -(-query_tokens // most)
    base, extra = divmod(query_tokens, count)
    tiles, start = [], 0
    for index in range(count):
        stop = start + base + (1 if index < extra else 0)
        tiles.append((start, stop))
        start = stop
    return tiles


def tile_similarity_bytes(query_tokens: int, memory_tokens: int, budget: int = READ_TILE_BYTES) -> int:
    """Bytes of the largest tile's float32 similarity (what the budget bounds)."""
    rows = max(stop - start for start, stop in read_tiles(query_tokens, memory_tokens, budget))
    return rows * memory_tokens * SIMILARITY_BYTES


#: Budget for one channel group of a full-size decoder intermediate (float32). The decoder's last
#: upsampling steps hold frame-sized tensors of 128 and 64 channels (2.1 GB each at 2160x3840);
#: above this budget they are built a channel group at a time, their convolutions summed over the
#: groups. 1088x1920 and below fit in one group, so their graph is the plain one.
DECODER_GROUP_BYTES = 512 * 2**20


def decoder_channel_groups(channels: int, height: int, width: int, budget: int = DECODER_GROUP_BYTES) -> int:
    """How many channel groups a (channels, height, width) float32 intermediate is built in: the
    fewest (a divisor of ``channels``) whose group fits ``budget``."""
    for groups in range(1, channels + 1):
        if channels % groups == 0 and (channels // groups) * height * width * 4 <= budget:
            return groups
    return channels
