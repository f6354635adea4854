"""Near-duplicate photos within and across listings (issue 16, item 4).

Two signals:
- perceptual hashes (pHash, imagehash's DCT hash of a 32x32 grey thumbnail) of the photo and of its
  central 90 %, each also mirrored. Two photos' distance is the fewest differing bits between the
  one's whole-photo hash and the other's whole, mirrored, or central hash (or the mirror of that),
  so that resized, recompressed, brightened, mirrored and re-cropped (up to about 10 %) copies land
  within a few bits (a 10 % re-crop within 4), where distinct photos of the same room type
  mostly lie 16 or more apart and distinct house fronts with the same sky-house-lawn layout can
  come within 12;
- the cosine of the tagger's embeddings (the bundled network's pooled features), which keeps a
  slightly rotated copy near 1, but also puts distinct photos of one kind (two house fronts) near
  0.9: it only ever confirms a pair whose hashes are already close.

A pair is a duplicate when its distance is at most `hash_bits`, or at most `confirm_bits` with a
cosine of at least `cosine`. Without embeddings (`tag --checks`, the index, `duplicates
--hashes-only`) the rule is the distance alone, at most `HASH_ONLY_BITS`. The defaults were chosen
on generated pairs against distinct photos of the same room type, and on real pairs among the
10,741 photos of ../shared/data labelled by eye (data/labels/duplicates.csv): at 10 bits, most
pairs of real photos are distinct photos that merely share a layout, and such pairs grow with the
square of a collection's size (`benchmarks/duplicates.py`, benchmarks/results/duplicates.md).
Duplicates are joined into groups (connected components), each photo's closest match named.

Up to LSH_FROM photos, every pair is compared (NumPy's popcount, in blocks of bounded memory over
the upper triangle, side by side on every core): the 10,741 photos of ../shared/data in 0.5 s on 2 cores, 100,000 in
34 s with 250 MB, so a million in about an hour. Exact bucketing by hash chunks prunes little at
these radii (7 to 14 of 64 bits); from LSH_FROM photos on, the hash-only rule compares bucket-mates
of sampled bits instead (`_pairs_by_buckets`: a million in 14 minutes, copies 6 bits off missed
about once in 50,000).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from ..data.images import PhotoError, read_photo

HASH_SIDE = 64  # decode JPEGs at about this short side: pHash reads a 32x32 thumbnail
# benchmarks/results/duplicates.md: chosen on half of the generated pairs and of the real pairs
# labelled by eye (data/labels/duplicates.csv), scored on the other halves
DEFAULT_HASH_BITS = 7
DEFAULT_CONFIRM_BITS = 14
DEFAULT_COSINE = 0.89
HASH_ONLY_BITS = 7  # the rule without embeddings (distances come in steps of 2: pHash sets 32 bits of 64)
BLOCK_PAIRS = 1 << 22  # pairs compared at once: about 60 MB of temporaries, whatever the collection's size
LSH_FROM = 150_000  # photos from which the hash-only rule compares bucket-mates only (_pairs_by_buckets)
LSH_TABLES, LSH_KEY_BITS = 60, 16
CENTRE = 0.9  # the central part hashed besides the whole photo: re-crops of up to about 10 %
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _imagehash():
    try:
        import imagehash
    except ImportError:
        raise ImportError("finding duplicates needs imagehash: pip install 'estatelens[checks]'") from None
    return imagehash


def photo_hashes(path: str) -> tuple[int, int, int, int]:
    """`image_hashes` of the photo at `path`; PhotoError for an unusable file."""
    return image_hashes(read_photo(path, HASH_SIDE)[0])


def image_hashes(im) -> tuple[int, int, int, int]:
    """64-bit pHashes of a decoded photo, its mirror image, its central 90 % and that part's mirror."""
    from PIL import ImageOps

    imagehash = _imagehash()
    im = im.convert("L")  # what phash reads; once here, not once per hash
    w, h = im.size
    dx, dy = int(w * (1 - CENTRE) / 2), int(h * (1 - CENTRE) / 2)
    centre = im.crop((dx, dy, w - dx, h - dy))
    return tuple(int(str(imagehash.phash(x)), 16)  # type: ignore[return-value]
                 for x in (im, ImageOps.mirror(im), centre, ImageOps.mirror(centre)))


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between uint64 arrays (broadcast), as uint8."""
    x = np.bitwise_xor(a, b).astype(np.uint64, copy=False)  # int64 hashes: the same bits, unsigned
    if hasattr(np, "bitwise_count"):  # NumPy 2: the CPU's popcount, one byte out per pair
        return np.bitwise_count(x)
    return _POPCOUNT[x.view(np.uint8).reshape(*x.shape, 8)].sum(axis=-1, dtype=np.uint8)


def hash_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The duplicate distance between photos' hash rows (..., 4) as `photo_hashes` gives them,
    broadcast: the one's whole photo against the other's whole, mirrored, central or mirrored
    central hash, and the other way round."""
    pairs = [(0, 0), (0, 1), (0, 2), (0, 3), (2, 0), (3, 0)]
    return np.minimum.reduce([hamming(a[..., i], b[..., j]) for i, j in pairs])


@dataclass
class Photo:
    path: str
    listing: str | None = None
    hashes: tuple[int, int, int, int] | None = None  # photo_hashes
    embedding: np.ndarray | None = None
    status: str = "ok"


@dataclass
class Pair:
    a: int
    b: int
    hash_bits: int
    cosine: float | None


@dataclass
class Groups:
    photos: list[Photo]
    pairs: list[Pair]
    group_of: dict[int, int] = field(default_factory=dict)  # photo index -> group number (1, 2, ...)

    def rows(self) -> list[dict]:
        """One row per photo in a group: group, path, listing, the group's listings, the closest
        other photo and how close."""
        def closeness(p: Pair) -> float:
            return (p.cosine or 0) - p.hash_bits / 64

        best: dict[int, Pair] = {}
        for p in self.pairs:
            for i in (p.a, p.b):
                if i not in best or closeness(p) > closeness(best[i]):
                    best[i] = p
        listings: dict[int, set] = {}
        for i, g in self.group_of.items():
            if self.photos[i].listing is not None:
                listings.setdefault(g, set()).add(self.photos[i].listing)
        out = []
        for i, g in sorted(self.group_of.items(), key=lambda kv: (kv[1], self.photos[kv[0]].path)):
            p = best[i]
            other = p.b if p.a == i else p.a
            ls = sorted(listings.get(g, ()))
            out.append({"group": g, "path": self.photos[i].path, "listing_id": self.photos[i].listing,
                        "listings": ";".join(ls), "across_listings": len(ls) > 1,
                        "closest": self.photos[other].path, "hash_bits": p.hash_bits,
                        "cosine": None if p.cosine is None else round(p.cosine, 4)})
        return out


def is_duplicate(d: np.ndarray, c: np.ndarray | None, hash_bits: int = DEFAULT_HASH_BITS,
                 confirm_bits: int = DEFAULT_CONFIRM_BITS, cosine: float | None = DEFAULT_COSINE) -> np.ndarray:
    """The rule: hash distance at most `hash_bits`, or at most `confirm_bits` with the cosine."""
    hit = d <= hash_bits
    if c is not None and cosine is not None:
        hit |= (d <= confirm_bits) & (c >= cosine)
    return hit


def find_pairs(photos: Sequence[Photo], hash_bits: int = DEFAULT_HASH_BITS, confirm_bits: int = DEFAULT_CONFIRM_BITS,
               cosine: float | None = DEFAULT_COSINE, block_pairs: int = BLOCK_PAIRS,
               progress: bool = False, lsh_from: int = LSH_FROM) -> list[Pair]:
    """Every pair of usable photos that `is_duplicate` says is one. Each block of rows is compared
    with the photos after it only, in blocks of at most `block_pairs` pairs. Without embeddings
    and from `lsh_from` photos on, only the pairs that share a bucket are compared
    (`_pairs_by_buckets`): near-certain for copies, not every pair for sure."""
    from tqdm import tqdm

    ok = [i for i, p in enumerate(photos) if p.status == "ok" and p.hashes is not None]
    if len(ok) < 2:
        return []
    h = np.array([photos[i].hashes for i in ok], dtype=np.uint64)
    use_emb = cosine is not None and all(photos[i].embedding is not None for i in ok)
    if use_emb:
        e = np.stack([photos[i].embedding for i in ok]).astype(np.float32)
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    n = len(ok)
    if not use_emb and n >= lsh_from:
        return _pairs_by_buckets(h, ok, hash_bits, block_pairs, progress=progress)
    block = max(1, block_pairs // n)

    def compare(s: int) -> list[Pair]:  # rows s.. against the photos from s on: the rest is done
        rows = slice(s, min(s + block, n - 1))
        d = hash_distance(h[rows, None, :], h[None, s:, :])
        c = e[rows] @ e[s:].T if use_emb else None
        hit = is_duplicate(d, c, hash_bits, confirm_bits, cosine if use_emb else None)
        return [Pair(ok[s + r], ok[s + k], int(d[r, k]), float(c[r, k]) if use_emb else None)
                for r, k in zip(*np.nonzero(hit)) if k > r]

    starts = range(0, n - 1, block)
    if len(starts) < 4:
        return [p for s in starts for p in compare(s)]
    # NumPy lets go of the GIL in its loops: blocks side by side use every core
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        found = tqdm(pool.map(compare, starts), total=len(starts), desc="comparing", unit="block", disable=not progress)
        return [p for chunk in found for p in chunk]


def _bucket_keys(x: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The bits of uint64 hashes `x` at `positions`, packed into one integer key each."""
    key = np.zeros(x.shape, np.uint64)
    for j, pos in enumerate(positions):
        key |= ((x >> np.uint64(pos)) & np.uint64(1)) << np.uint64(j)
    return key


def _pairs_by_buckets(h: np.ndarray, ok: list[int], hash_bits: int, block_pairs: int,
                      tables: int = LSH_TABLES, key_bits: int = LSH_KEY_BITS, seed: int = 0,
                      progress: bool = False) -> list[Pair]:
    """The pairs within `hash_bits` among hash rows `h` (n, 4), found by locality-sensitive hashing:
    in each of `tables` tables a photo's key is `key_bits` bits of its whole-photo hash drawn at
    random, and each of its four hashes is looked up there; only photos that share a key are
    compared, by the full distance. A pair d bits apart shares a key in a table with probability
    C(64 - d, k) / C(64, k): for d = 6 and 16 bits, 0.16, so 60 tables miss it about once in
    50,000; 2 bits apart, about once in 10^21. Distinct photos share a 16-bit key about 3 times in
    100,000 (real hashes), so under 1 % of the pairs are compared."""
    from tqdm import tqdm

    n = len(ok)
    rng = np.random.default_rng(seed)
    found = set()
    pairs = []
    for _ in tqdm(range(tables), desc="comparing bucket-mates", unit="table", disable=not progress):
        positions = rng.choice(64, key_bits, replace=False)
        index = _bucket_keys(h[:, 0], positions)
        order = np.argsort(index, kind="stable")
        sorted_keys = index[order]
        for v in range(h.shape[1]):
            keys = index if v == 0 else _bucket_keys(h[:, v], positions)
            lo = np.searchsorted(sorted_keys, keys, "left")
            counts = np.searchsorted(sorted_keys, keys, "right") - lo
            ends = np.cumsum(counts)
            start = 0
            while start < n:  # rows in chunks of at most block_pairs candidates
                stop = max(start + 1, int(np.searchsorted(ends, ends[start] - counts[start] + block_pairs, "right")))
                stop = min(stop, n)
                rows = np.arange(start, stop)
                c = counts[rows]
                i = np.repeat(rows, c)
                offset = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
                j = order[np.repeat(lo[rows], c) + offset]
                a, b = np.minimum(i, j), np.maximum(i, j)
                keep = a != b
                a, b = a[keep], b[keep]
                d = hash_distance(h[a], h[b])
                hit = d <= hash_bits
                for x, y, bits in zip(a[hit], b[hit], d[hit]):
                    if (x, y) not in found:
                        found.add((x, y))
                        pairs.append(Pair(ok[x], ok[y], int(bits), None))
                start = stop
    return sorted(pairs, key=lambda p: (p.a, p.b))


def group(photos: Sequence[Photo], pairs: Iterable[Pair]) -> Groups:
    """Connected components of the duplicate pairs, numbered by their first photo's path."""
    parent = list(range(len(photos)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    pairs = list(pairs)
    for p in pairs:
        parent[find(p.a)] = find(p.b)
    members: dict[int, list[int]] = {}  # every photo of a component is in one of its pairs
    for i in sorted({i for p in pairs for i in (p.a, p.b)}):
        members.setdefault(find(i), []).append(i)
    ordered = sorted(members.values(), key=lambda ms: min(photos[i].path for i in ms))
    return Groups(list(photos), pairs, {i: n for n, ms in enumerate(ordered, start=1) for i in ms})


def hash_groups(names: Sequence[str], hashes: Sequence[Sequence[str]]) -> dict[int, int]:
    """Position -> duplicate group (1, 2, ...) of the photos that have a near copy among them, from
    their stored pHashes (hex, as `photo_hashes` gives them) alone: the rule `tag --checks` and the
    index use, without the embedding confirmation (at most HASH_ONLY_BITS apart). Groups are
    numbered by `names`."""
    photos = [Photo(n, hashes=tuple(int(h, 16) for h in hs)) for n, hs in zip(names, hashes)]
    return group(photos, find_pairs(photos, HASH_ONLY_BITS, cosine=None)).group_of


def hash_photos(photos: Sequence[Photo], progress: bool = False) -> None:
    """Fill each photo's hashes in place; an unusable file gets its reason as status."""
    from tqdm import tqdm

    for p in tqdm(photos, desc="hashing", unit="photo", disable=not progress):
        try:
            p.hashes = photo_hashes(p.path)
        except PhotoError as e:
            p.status = e.reason
