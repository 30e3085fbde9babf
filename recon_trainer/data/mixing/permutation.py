"""LazyPermutation: a pseudo-random permutation of range(n) in O(1) memory, computed item by item.

`torch.randperm(n)` holds n int64s (8 GB for n = 10**9); a mixing expression such as
`1000000000 @ ReDWeb(...)` needs a fresh order of its items every epoch without that.

Construction: a balanced Feistel network on 2h-bit integers (the smallest even width with
2**(2h) >= n): the value splits into halves (L, R) of h bits, and each of ROUNDS rounds maps
(L, R) -> (R, L xor F_k(R)), with F_k a 64-bit mixing hash (splitmix64's finaliser) of R and
the round key k. Whatever F is, each round is invertible ((L, R) = (R' xor F_k(L'), L')), so
the network is a bijection of [0, 2**(2h)). Cycle-walking restricts it to [0, n): perm[i] is the
first of enc(i), enc(enc(i)), ... below n. That is a bijection of [0, n) (the walk stays on the
cycle of i, which returns to i < n, and distinct starts cannot reach the same first value below
n, since going backwards from it reaches exactly one start). As 2**(2h) < 4n, a walk takes fewer
than 4 steps on average. The round keys come from the seed, so the order is deterministic from it.
"""
from __future__ import annotations

ROUNDS = 6  # Luby-Rackoff: 4 rounds of a pseudo-random function already give a pseudo-random permutation
_MASK64 = (1 << 64) - 1


def mix64(value: int) -> int:
    """splitmix64's finaliser: a bijective, well-mixing hash of a 64-bit integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


class LazyPermutation:
    """perm[i] for i in range(n): a pseudo-random permutation drawn from `seed` (module doc).

    n: any size >= 1 (integers of any size; the mixing code keeps n <= 10**12). seed: any integer.
    """

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise ValueError(f"LazyPermutation: n must be >= 1, got {n}")
        self.n = n
        self.half_bits = max(1, ((n - 1).bit_length() + 1) // 2)
        self._half_mask = (1 << self.half_bits) - 1
        self._keys = [mix64((seed & _MASK64) ^ mix64(round_index)) for round_index in range(ROUNDS)]

    def __len__(self) -> int:
        return self.n

    def _encrypt(self, value: int) -> int:
        left, right = value >> self.half_bits, value & self._half_mask
        for key in self._keys:
            left, right = right, left ^ (mix64(right ^ key) & self._half_mask)
        return (left << self.half_bits) | right

    def __getitem__(self, index: int) -> int:
        if not 0 <= index < self.n:
            raise IndexError(f"LazyPermutation: index {index} out of range [0, {self.n})")
        value = self._encrypt(index)
        while value >= self.n:
            value = self._encrypt(value)
        return value
