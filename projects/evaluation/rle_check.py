"""Validation of RLE masks before pycocotools decodes them.

pycocotools trusts its input: a compressed ``counts`` string that ends inside a number makes ``rleFrString``
read past the string, counts summing to more than ``h*w`` make ``rleDecode`` write past the mask, counts
summing to less leave the rest of the mask uninitialised. :func:`check_rles` refuses all of these.

Compressed counts (pycocotools ``rleToString`` / ``rleFrString``): every count is written as little-endian
5-bit chunks, one character per chunk, ``char = chunk + 48``; bit 0x20 of ``char - 48`` means "another chunk
follows", bit 0x10 of the last chunk is the sign (the value is sign-extended). From the fourth count on
(index >= 3) the stored value is the difference to the count two positions earlier. Valid characters are
therefore ``'0'`` (48) .. ``'o'`` (111). A 32-bit count difference needs at most 7 chunks.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["check_rles", "decode_counts_string"]

_MAX_CHUNKS = 7  # ceil(33 / 5): a signed difference of two uint32 counts


def _size(rle: dict) -> Tuple[int, int]:
    size = rle.get("size")
    if (
        not isinstance(size, (list, tuple))
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in size)
    ):
        raise ValueError(f"RLE 'size' must be [height, width] of non-negative integers, got {size!r}")
    return int(size[0]), int(size[1])


def _as_bytes(counts: Any) -> bytes:
    if isinstance(counts, bytes):
        return counts
    try:
        return counts.encode("ascii")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"compressed RLE counts contain the non-ASCII character {counts[e.start]!r} at position {e.start}"
        ) from None


def _decode_batch(strings: Sequence[bytes]) -> Tuple[np.ndarray, np.ndarray, List[Optional[str]]]:
    """Decode many counts strings at once (vectorised, linear in the total length).

    Returns ``(counts (N,) int64 of all strings concatenated, offsets (S+1,) into counts, errors)`` where
    ``errors[s]`` is a message for an undecodable string ``s`` (its counts are then meaningless) or ``None``.
    """
    lengths = np.fromiter((len(s) for s in strings), dtype=np.int64, count=len(strings))
    char_offsets = np.concatenate([[0], np.cumsum(lengths)])
    errors: List[Optional[str]] = [None] * len(strings)
    code = np.frombuffer(b"".join(strings), dtype=np.uint8).astype(np.int64) - 48
    bad_char = (code < 0) | (code > 63)
    if bad_char.any():
        for pos in np.flatnonzero(bad_char):  # only on corrupt input
            s = int(np.searchsorted(char_offsets, pos, side="right")) - 1
            if errors[s] is None:
                errors[s] = (
                    f"compressed RLE counts contain the invalid character {chr(code[pos] + 48)!r} at "
                    f"position {pos - char_offsets[s]} (valid: '0'..'o')"
                )
        code = np.where(bad_char, 0, code)
    last = code & 0x20 == 0  # a count ends at every chunk without the continuation bit
    nonempty = np.flatnonzero(lengths > 0)
    ends = char_offsets[1:][nonempty] - 1
    truncated = ~last[ends]
    for s in nonempty[truncated]:  # only on corrupt input
        errors[s] = (
            f"compressed RLE counts string is truncated: its last character "
            f"{chr(code[char_offsets[s + 1] - 1] + 48)!r} announces another chunk"
        )
    last[ends] = True  # close a dangling count so that the other strings still decode
    ends_before = np.concatenate([[0], np.cumsum(last)])
    count_offsets = ends_before[char_offsets]  # (S+1,) each string's first count
    n_counts = int(count_offsets[-1])
    group = ends_before[:-1]  # count index of every character
    group_start = np.flatnonzero(np.concatenate([[True], last[:-1]]))[:n_counts]
    k = np.arange(code.size) - group_start[group]  # chunk index within its count
    n_chunks = np.bincount(group, minlength=n_counts)
    for g in np.flatnonzero(n_chunks > _MAX_CHUNKS):  # only on corrupt input
        s = int(np.searchsorted(count_offsets, g, side="right")) - 1
        if errors[s] is None:
            errors[s] = (
                f"compressed RLE count {g - count_offsets[s]} spans {n_chunks[g]} characters "
                f"(at most {_MAX_CHUNKS} encode a 32-bit count)"
            )
    k = np.minimum(k, _MAX_CHUNKS)  # bounded shifts; over-long counts are refused above
    # float64 sums of < 2**35 are exact
    value = np.bincount(group, weights=(code & 0x1F) << (5 * k), minlength=n_counts).astype(np.int64)
    negative = (code[last] & 0x10) != 0  # sign bit of each count's last chunk: sign-extend
    value -= np.where(negative, np.int64(1) << (5 * np.minimum(n_chunks, _MAX_CHUNKS)), 0)
    # delta decoding: a count with index m >= 3 adds the count at m - 2, i.e. running sums along the chains
    # m = 1, 3, 5, ... and m = 2, 4, 6, ... of each string (m = 0 stands alone)
    string_of = np.repeat(np.arange(len(strings)), np.diff(count_offsets))
    m = np.arange(n_counts) - count_offsets[string_of]
    counts = value.copy()
    for chain in ((m % 2 == 1), (m % 2 == 0) & (m >= 2)):
        running = np.concatenate([[0], np.cumsum(np.where(chain, value, 0))])
        counts = np.where(chain, running[1:] - running[count_offsets[string_of]], counts)
    return counts, count_offsets, errors


def decode_counts_string(counts: Any) -> np.ndarray:
    """The run lengths of one compressed counts string (str or bytes); ``ValueError`` if it does not decode."""
    decoded, offsets, errors = _decode_batch([_as_bytes(counts)])
    if errors[0]:
        raise ValueError(errors[0])
    return decoded[offsets[0] : offsets[1]]


def check_rles(rles: Sequence[Any]) -> List[Optional[str]]:
    """Check RLE dicts (compressed or uncompressed ``counts``); one message or ``None`` per input.

    A valid RLE has ``size`` [h, w] and counts that decode to non-negative run lengths summing to exactly
    ``h*w``. Compressed strings are decoded in one vectorised pass over all of them.
    """
    messages: List[Optional[str]] = [None] * len(rles)
    compressed_index, compressed, areas = [], [], []
    for i, rle in enumerate(rles):
        try:
            if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
                raise ValueError("an RLE needs 'size' and 'counts'")
            h, w = _size(rle)
            counts = rle["counts"]
            if isinstance(counts, (str, bytes)):
                compressed.append(_as_bytes(counts))
                compressed_index.append(i)
                areas.append(h * w)
            elif isinstance(counts, list):
                if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in counts):
                    raise ValueError("uncompressed RLE counts must be a list of integers")
                if counts and min(counts) < 0:
                    raise ValueError(f"uncompressed RLE counts contain the negative run {min(counts)}")
                total = sum(int(c) for c in counts)  # exact (Python ints)
                if total != h * w:
                    raise ValueError(f"uncompressed RLE counts sum to {total}, not height*width = {h}*{w} = {h * w}")
            else:
                raise ValueError(f"RLE 'counts' must be a string or a list of integers, got {type(counts).__name__}")
        except ValueError as e:
            messages[i] = str(e)
    if compressed:
        counts, offsets, errors = _decode_batch(compressed)
        summed = np.concatenate([[0], np.cumsum(counts)])
        sums = summed[offsets[1:]] - summed[offsets[:-1]]
        negatives = np.concatenate([[0], np.cumsum(counts < 0)])
        has_negative = negatives[offsets[1:]] > negatives[offsets[:-1]]
        for j, i in enumerate(compressed_index):
            h, w = _size(rles[i])
            if errors[j]:
                messages[i] = errors[j]
            elif has_negative[j]:
                m = int(np.argmax(counts[offsets[j] : offsets[j + 1]] < 0))
                messages[i] = f"compressed RLE counts decode to a negative run at count {m}"
            elif sums[j] != areas[j]:
                messages[i] = f"compressed RLE counts sum to {int(sums[j])}, not height*width = {h}*{w} = {areas[j]}"
    return messages
