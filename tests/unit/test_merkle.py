"""RFC 9162 Merkle hashing against the RFC 6962 / certificate-transparency reference vectors
(transparency-dev/merkle testonly/constants.go and proof/verify_test.go) plus properties."""

import pytest
from hypothesis import given, settings, strategies as st

from gateway.evidence.merkle import (
    EMPTY_ROOT,
    CompactRange,
    SubtreeRoots,
    consistency_proof,
    consistency_ranges,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    root,
    subtree_roots,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
HASHES = [leaf_hash(data) for data in LEAVES]

# Root of the tree of the first n leaves, n = 0..8.
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# (leaf index, tree size, proof) from the reference verifier tests.
INCLUSION_VECTORS = [
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]

# (old size, new size, proof)
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]


def flip(data: bytes, bit: int) -> bytes:
    buf = bytearray(data)
    buf[bit // 8 % len(buf)] ^= 1 << (bit % 8)
    return bytes(buf)


@pytest.mark.parametrize("size", range(9))
def test_root_matches_reference_vectors(size):
    assert root(HASHES[:size]) == ROOTS[size]


def test_empty_tree_is_sha256_of_nothing():
    assert root([]) == EMPTY_ROOT == ROOTS[0]
    assert CompactRange().root() == EMPTY_ROOT


def test_leaf_and_node_hashes_are_domain_separated():
    assert HASHES[0] == h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert node_hash(HASHES[0], HASHES[1]) == ROOTS[2]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_proofs_match_reference_vectors(index, size, proof):
    assert inclusion_proof(HASHES[:size], index) == proof
    assert verify_inclusion(HASHES[index], index, size, proof, ROOTS[size])


def test_shared_subtree_roots_give_every_reference_proof_and_root():
    for size in range(1, len(HASHES) + 1):
        ranges = [r for i in range(size) for r in inclusion_ranges(i, size)]
        roots = subtree_roots(HASHES[:size], [*ranges, (0, size)])
        assert roots[(0, size)] == ROOTS[size]
        for index in range(size):
            path = [roots[r] for r in inclusion_ranges(index, size)]
            assert path == inclusion_proof(HASHES[:size], index)
    with pytest.raises(ValueError, match="outside"):
        subtree_roots(HASHES[:3], [(2, 4)])
    with pytest.raises(ValueError, match="not a subtree"):
        subtree_roots(HASHES[:8], [(1, 3)])


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_streamed_subtree_roots_give_every_proof_of_any_tree(size: int, data: st.DataObject):
    hashes = [leaf_hash(n.to_bytes(4, "big")) for n in range(size)]
    leaves = data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=8))
    old = data.draw(st.integers(1, size))
    wanted = [(0, size), *consistency_ranges(old, size)]
    wanted += [r for i in leaves for r in inclusion_ranges(i, size)]
    builder = SubtreeRoots(size, wanted)
    chunk = data.draw(st.integers(1, 64))
    for start in range(0, size, chunk):  # fed in batches, as the log streams them
        builder.feed(hashes[start : start + chunk])
    roots = builder.roots()
    assert roots[(0, size)] == root(hashes)
    for i in leaves:
        assert [roots[r] for r in inclusion_ranges(i, size)] == inclusion_proof(hashes, i)
    assert [roots[r] for r in consistency_ranges(old, size)] == consistency_proof(hashes, old)


def test_subtree_roots_need_every_leaf_and_no_more():
    builder = SubtreeRoots(5, [(0, 5)])
    builder.feed(HASHES[:4])
    with pytest.raises(ValueError, match="4 of 5"):
        builder.roots()
    with pytest.raises(ValueError, match="more than 5"):
        builder.feed(HASHES[4:6])


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_corrupted_inclusion_proofs_fail(index, size, proof):
    good = (HASHES[index], index, size, proof, ROOTS[size])
    assert verify_inclusion(*good)
    leaf, _, _, _, tree_root = good
    assert not verify_inclusion(leaf, index + 1, size, proof, tree_root)
    assert not verify_inclusion(leaf, index ^ 2, size, proof, tree_root)
    assert not verify_inclusion(leaf, index, size * 2, proof, tree_root)
    assert not verify_inclusion(leaf, index, size // 2, proof, tree_root)
    assert not verify_inclusion(b"WrongLeaf", index, size, proof, tree_root)
    assert not verify_inclusion(leaf, index, size, proof, EMPTY_ROOT)
    assert not verify_inclusion(leaf, index, size, [*proof, b""], tree_root)
    assert not verify_inclusion(leaf, index, size, [*proof, tree_root], tree_root)
    assert not verify_inclusion(leaf, index, size, [tree_root, *proof], tree_root)
    assert not verify_inclusion(leaf, index, size, proof[:-1], tree_root)
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = flip(wrong[i], 3)
        assert not verify_inclusion(leaf, index, size, wrong, tree_root)


def test_inclusion_rejects_out_of_range_indexes():
    assert not verify_inclusion(HASHES[0], 0, 0, [], EMPTY_ROOT)
    assert not verify_inclusion(HASHES[0], 1, 1, [], HASHES[0])
    assert verify_inclusion(HASHES[0], 0, 1, [], HASHES[0])
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(HASHES[:3], 3)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_VECTORS)
def test_consistency_proofs_match_reference_vectors(old, new, proof):
    assert consistency_proof(HASHES[:new], old) == proof
    assert verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


@pytest.mark.parametrize(("old", "new", "proof"), [v for v in CONSISTENCY_VECTORS if v[2]])
def test_corrupted_consistency_proofs_fail(old, new, proof):
    r1, r2 = ROOTS[old], ROOTS[new]
    assert not verify_consistency(old - 1, new, r1, r2, proof)
    assert not verify_consistency(old + 1, new, r1, r2, proof)
    assert not verify_consistency(old, new * 2, r1, r2, proof)
    assert not verify_consistency(old, new, b"WrongRoot", r2, proof)
    assert not verify_consistency(old, new, r1, b"WrongRoot", proof)
    assert not verify_consistency(old, new, r2, r1, proof)
    assert not verify_consistency(old, new, r1, r2, [])
    assert not verify_consistency(old, new, r1, r2, [*proof, b""])
    assert not verify_consistency(old, new, r1, r2, [*proof, r2])
    assert not verify_consistency(old, new, r1, r2, [proof[0], *proof])
    assert not verify_consistency(old, new, r1, r2, proof[:-1])
    for i in range(len(proof)):
        wrong = list(proof)
        wrong[i] = flip(wrong[i], 4)
        assert not verify_consistency(old, new, r1, r2, wrong)


def test_consistency_edge_cases():
    assert verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [EMPTY_ROOT])
    assert verify_consistency(3, 3, ROOTS[3], ROOTS[3], [])
    assert not verify_consistency(3, 3, ROOTS[3], ROOTS[4], [])
    assert not verify_consistency(4, 3, ROOTS[4], ROOTS[3], [])


def test_compact_range_matches_reference_state():
    compact = CompactRange()
    for size, leaf in enumerate(HASHES, 1):
        compact.append(leaf)
        assert compact.size == size
        assert len(compact.hashes) == size.bit_count()
        assert compact.root() == ROOTS[size]
    restored = CompactRange(7, _compact(HASHES[:7]).hashes)
    restored.append(HASHES[7])
    assert restored.root() == ROOTS[8]
    with pytest.raises(ValueError, match="hashes"):
        CompactRange(3, [HASHES[0]])


def _compact(hashes: list[bytes]) -> CompactRange:
    compact = CompactRange()
    compact.extend(hashes)
    return compact


def _naive_root(hashes: list[bytes]) -> bytes:
    """MTH exactly as RFC 6962 section 2.1 writes it, recursively."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(_naive_root(hashes[:k]), _naive_root(hashes[k:]))


trees = st.lists(st.binary(max_size=8), min_size=1, max_size=70).map(
    lambda leaves: [leaf_hash(data) for data in leaves]
)


@given(trees)
def test_root_equals_the_recursive_definition(hashes):
    assert root(hashes) == _naive_root(hashes)


@given(trees, st.data())
def test_every_inclusion_proof_verifies_and_a_flipped_bit_fails(hashes, data):
    index = data.draw(st.integers(0, len(hashes) - 1))
    tree_root = root(hashes)
    proof = inclusion_proof(hashes, index)
    assert verify_inclusion(hashes[index], index, len(hashes), proof, tree_root)
    bit = data.draw(st.integers(0, 255))
    assert not verify_inclusion(flip(hashes[index], bit), index, len(hashes), proof, tree_root)
    assert not verify_inclusion(hashes[index], index, len(hashes), proof, flip(tree_root, bit))
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        wrong = [flip(p, bit) if i == which else p for i, p in enumerate(proof)]
        assert not verify_inclusion(hashes[index], index, len(hashes), wrong, tree_root)


@given(trees, st.data())
def test_every_consistency_proof_verifies(hashes, data):
    old = data.draw(st.integers(0, len(hashes)))
    old_root, new_root = root(hashes[:old]), root(hashes)
    proof = consistency_proof(hashes, old)
    assert verify_consistency(old, len(hashes), old_root, new_root, proof)
    if proof:
        bit = data.draw(st.integers(0, 255))
        wrong = [flip(proof[0], bit), *proof[1:]]
        assert not verify_consistency(old, len(hashes), old_root, new_root, wrong)
        assert not verify_consistency(old, len(hashes), flip(old_root, bit), new_root, proof)


@settings(max_examples=50)
@given(trees, st.data())
def test_compact_range_root_equals_root_at_every_size_and_after_restore(hashes, data):
    compact = CompactRange()
    for size, leaf in enumerate(hashes, 1):
        compact.append(leaf)
        assert compact.root() == root(hashes[:size])
    cut = data.draw(st.integers(0, len(hashes)))
    resumed = CompactRange(cut, _compact(hashes[:cut]).hashes)
    resumed.extend(hashes[cut:])
    assert resumed.root() == compact.root()
