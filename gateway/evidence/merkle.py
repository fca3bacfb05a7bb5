"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashing, pure (no I/O).

Theory of operation: a leaf hashes as ``SHA-256(0x00 || data)`` and an interior node as
``SHA-256(0x01 || left || right)``. A tree of ``n`` leaves splits at the largest power of two
strictly below ``n``, so every tree is a row of perfect subtrees whose sizes are the set bits
of ``n``. ``CompactRange`` keeps just those subtree roots (at most log2(n) hashes), which is
enough to append in amortised O(1) and to fold the root of any prefix.

Every inclusion and consistency proof element is the root of some leaf range ``[lo, hi)``.
``inclusion_ranges`` / ``consistency_ranges`` name those ranges without touching a hash, and
``SubtreeRoots`` computes their roots from leaf hashes fed in index order, so a store can
stream a million leaves through any number of proofs in O(log n) memory instead of loading
the tree.
"""

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


def leaf_hash(data: bytes) -> bytes:
    """The RFC 9162 hash of one leaf's bytes."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The RFC 9162 hash of an interior node from its two children."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


class CompactRange:
    """The roots of the perfect subtrees covering leaves ``[0, size)``, largest first.

    ``append`` merges equal-sized neighbours like a binary counter carries, so appending is
    amortised one node hash per leaf. ``CompactRange(size, hashes)`` restores saved state.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        self._size = size
        self._hashes = list(hashes)
        if size < 0 or len(self._hashes) != size.bit_count():
            raise ValueError(
                f"a compact range of size {size} has {max(size, 0).bit_count()} hashes, "
                f"got {len(self._hashes)}"
            )

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf: bytes) -> None:
        """Add the next leaf hash (not the leaf data)."""
        node = leaf
        stack = self._hashes
        carry = self._size
        while carry & 1:
            node = node_hash(stack.pop(), node)
            carry >>= 1
        stack.append(node)
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        """The Merkle tree hash of leaves ``[0, size)``."""
        if not self._hashes:
            return EMPTY_ROOT
        node = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            node = node_hash(left, node)
        return node

    def copy(self) -> "CompactRange":
        return CompactRange(self._size, self._hashes)

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size})"


def root(leaf_hashes: Iterable[bytes]) -> bytes:
    """The Merkle tree hash (MTH) of the given leaf hashes; SHA-256("") for none."""
    compact = CompactRange()
    compact.extend(leaf_hashes)
    return compact.root()


def _split(size: int) -> int:
    """The largest power of two strictly smaller than ``size`` (``size`` >= 2)."""
    return 1 << ((size - 1).bit_length() - 1)


def inclusion_ranges(index: int, tree_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots form the inclusion proof of ``index``, leaf side first."""
    if not 0 <= index < tree_size:
        raise ValueError(f"leaf index {index} is outside a tree of size {tree_size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, tree_size
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    ranges.reverse()
    return ranges


class SubtreeRoots:
    """The roots of RFC 9162 subtree ranges (as ``inclusion_ranges`` and
    ``consistency_ranges`` name them) of a tree of ``size`` leaves, from one pass over its
    leaf hashes fed in index order, holding O(log size) hashes whatever the tree's size.

    Every such range is a node of the tree, and a node is either a perfect subtree aligned
    to its size or runs to the tree's right edge. Feeding merges equal-sized neighbours as
    ``CompactRange`` does, and each merge makes exactly the aligned perfect subtree that
    ends at that leaf: a wanted one is kept as it appears. At the end the stack holds the
    perfect subtrees covering the tree, largest first; folding them from the right gives
    every range that runs to the right edge. So the proofs of any number of leaves cost one
    pass over the log.
    """

    def __init__(self, size: int, ranges: Iterable[tuple[int, int]]) -> None:
        self._size = size
        self._wanted = set(ranges)
        for lo, hi in self._wanted:
            if not 0 <= lo < hi <= size:
                raise ValueError(f"range {lo}..{hi} is outside a tree of {size} leaves")
            width = hi - lo
            if hi != size and (width & (width - 1) or lo % width):
                raise ValueError(f"range {lo}..{hi} is not a subtree of a tree of {size} leaves")
        self._roots: dict[tuple[int, int], bytes] = {}
        self._stack: list[bytes] = []
        self._count = 0

    def feed(self, leaf_hashes: Iterable[bytes]) -> None:
        wanted, roots, stack = self._wanted, self._roots, self._stack
        for leaf in leaf_hashes:
            end = self._count + 1
            if end > self._size:
                raise ValueError(f"more than {self._size} leaves fed")
            node, width, carry = leaf, 1, self._count
            if (self._count, end) in wanted:
                roots[(self._count, end)] = node
            while carry & 1:
                node = node_hash(stack.pop(), node)
                width <<= 1
                carry >>= 1
                if (end - width, end) in wanted:
                    roots[(end - width, end)] = node
            stack.append(node)
            self._count = end

    def roots(self) -> dict[tuple[int, int], bytes]:
        """Every wanted range's root; all ``size`` leaves must have been fed."""
        if self._count != self._size:
            raise ValueError(f"{self._count} of {self._size} leaves were fed")
        # The stack's subtrees follow the binary digits of size, largest first.
        starts, lo = [], 0
        for bit in reversed(range(self._size.bit_length())):
            if self._size >> bit & 1:
                starts.append(lo)
                lo += 1 << bit
        suffix: bytes | None = None
        for start, node in zip(reversed(starts), reversed(self._stack), strict=True):
            suffix = node if suffix is None else node_hash(node, suffix)
            if (start, self._size) in self._wanted:
                self._roots[(start, self._size)] = suffix
        missing = self._wanted - self._roots.keys()
        if missing:
            raise ValueError(f"ranges {sorted(missing)} were not computed")
        return dict(self._roots)


def subtree_roots(
    leaves: Sequence[bytes], ranges: Iterable[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """``SubtreeRoots`` over leaf hashes already in memory."""
    builder = SubtreeRoots(len(leaves), ranges)
    builder.feed(leaves)
    return builder.roots()


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose roots form the RFC 9162 consistency proof ``old -> new``."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"cannot prove tree size {old_size} is a prefix of {new_size}")
    if old_size in (0, new_size):
        return []
    # RFC 9162 section 2.1.4.1 SUBPROOF(m, D[lo:hi], b), unrolled; siblings are collected
    # root side first and reversed at the end.
    ranges: list[tuple[int, int]] = []
    lo, hi, m, whole = 0, new_size, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The RFC 9162 inclusion proof of leaf ``index`` in the tree of all ``leaf_hashes``."""
    ranges = inclusion_ranges(index, len(leaf_hashes))
    roots = subtree_roots(leaf_hashes, ranges)
    return [roots[r] for r in ranges]


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """The RFC 9162 proof that the tree of the first ``old_size`` leaves is a prefix."""
    ranges = consistency_ranges(old_size, len(leaf_hashes))
    roots = subtree_roots(leaf_hashes, ranges)
    return [roots[r] for r in ranges]


def root_from_inclusion_proof(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes]
) -> bytes | None:
    """The root implied by an inclusion proof (RFC 9162 section 2.1.3.2), or None if the
    proof has the wrong shape for ``index`` and ``tree_size``."""
    if not 0 <= index < tree_size:
        return None
    fn, sn = index, tree_size - 1
    node = leaf
    for sibling in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            node = node_hash(node, sibling)
        fn >>= 1
        sn >>= 1
    return node if sn == 0 else None


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes], root_hash: bytes
) -> bool:
    """True when ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree ``root_hash``."""
    return root_from_inclusion_proof(leaf, index, tree_size, proof) == root_hash


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True when ``proof`` shows tree ``old_root`` is a prefix of ``new_root`` (RFC 9162
    section 2.1.4.2). Equal sizes need equal roots and an empty proof; size 0 is a prefix
    of everything."""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(node, fr)
            sr = node_hash(node, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "SubtreeRoots",
    "consistency_proof",
    "consistency_ranges",
    "inclusion_proof",
    "inclusion_ranges",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_inclusion_proof",
    "subtree_roots",
    "verify_consistency",
    "verify_inclusion",
]
