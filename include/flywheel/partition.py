"""Dedup, the minimum-size check, sampling to ``limit``, the stratified split, leakage checks.

Everything here is deterministic for a seed and independent of the order records arrive
in wherever that is cheap: a record's place in the sample is decided by a seeded hash of its
prompt, not by its position in the stream.

Steps 4-8 of DESIGN section 4 use these pieces in order:

* :class:`Deduplicator` keeps the first occurrence of each prompt hash, counting the rest;
* :func:`check_minimum` raises :class:`InsufficientDataError` with the numbers and a remedy;
* :class:`LabelMixSampler` streams records and keeps a ``limit``-sized sample whose label
  mix matches the full stream (memory bounded by about ``1.1 * limit`` records);
* :func:`stratified_split` splits into eval, then train/val, stratified at both steps
  with rare labels pooled;
* :func:`check_leakage` proves no eval prompt is in train/val or an earlier training set.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import random
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

RARE_LABELS = "__rare__"


class InsufficientDataError(ValueError):
    """Too few usable records to build the datasets. The message says why and what to do."""

    def __init__(
        self,
        message: str,
        *,
        found: int,
        needed: int,
        read: int = 0,
        dropped: Mapping[str, int] | None = None,
        duplicates: int = 0,
    ) -> None:
        super().__init__(message)
        self.found = found
        self.needed = needed
        self.read = read
        self.dropped = dict(dropped or {})
        self.duplicates = duplicates


class LeakageError(ValueError):
    """An eval prompt also appears in a training set."""


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole else "n/a"


def check_minimum(
    found: int,
    needed: int,
    *,
    read: int,
    dropped: Mapping[str, int],
    duplicates: int,
    workload_id: str = "",
    eval_size: int | None = None,
) -> None:
    """Raise :class:`InsufficientDataError` unless ``found`` usable records reach ``needed``.

    Also raises when the eval set would take every record (nothing left to train on or to
    draw in-context examples from).

    Args:
        found: Usable records (valid, unique).
        needed: ``data_split.min_total_records``.
        read: Records read from the log source.
        dropped: Drops by reason code.
        duplicates: Records dropped as duplicates.
        workload_id: Named in the message.
        eval_size: ``data_split.eval_size``; at least one record must remain after it.
    """
    short_of_minimum = found < needed
    no_training = eval_size is not None and found <= eval_size
    if not short_of_minimum and not no_training:
        return
    who = f"workload {workload_id!r}" if workload_id else "this workload"
    losses = dict(dropped)
    if duplicates:
        losses["duplicates"] = duplicates
    top = sorted(losses.items(), key=lambda item: (-item[1], item[0]))[:3]
    if top:
        lost = ", ".join(f"{reason} {count} ({_percent(count, read)} of read)" for reason, count in top)
        dominated = f" Most were lost to: {lost}."
    else:
        dominated = " Nothing was dropped: the log source returned too few records."
    if short_of_minimum:
        head = (
            f"Not enough usable records for {who}: {found} remain of {read} read, "
            f"and data_split.min_total_records needs {needed}."
        )
    else:
        head = (
            f"Not enough usable records for {who}: {found} remain of {read} read, and data_split.eval_size "
            f"({eval_size}) would take all of them, leaving nothing to train on or to draw in-context examples from."
        )
    advice = (
        " To fix: widen the log window (a longer data interval or a backfill), check that workload_id and "
        "client_id match what the application logs"
    )
    if top and top[0][0] != "duplicates":
        advice += f", fix the logging behind the main drop reason ({top[0][0]})"
    advice += ", or lower data_split.min_total_records / data_split.eval_size for this workload."
    raise InsufficientDataError(
        head + dominated + advice, found=found, needed=needed, read=read, dropped=dropped, duplicates=duplicates
    )


class Deduplicator:
    """Remembers keys seen; the first occurrence wins, later ones are counted.

    Memory: one int per unique key when the keys are ints (use ``LogRecord.dedup_key``).
    """

    def __init__(self) -> None:
        self._seen: set[Hashable] = set()
        self.duplicates = 0

    def is_new(self, key: Hashable) -> bool:
        """Record ``key``; return False (and count a duplicate) when it was seen before."""
        seen = self._seen
        if key in seen:
            self.duplicates += 1
            return False
        seen.add(key)
        return True

    def __len__(self) -> int:
        return len(self._seen)


def deduplicate(items: Iterable[T], key: Callable[[T], Hashable]) -> tuple[list[T], int]:
    """Keep the first item of each key. Returns the kept items and the number of duplicates."""
    dedup = Deduplicator()
    kept = [item for item in items if dedup.is_new(key(item))]
    return kept, dedup.duplicates


def sample_priority(key: int | bytes | str, seed: int) -> int:
    """A seeded pseudo-random 64-bit rank for a record key: the sampling order.

    A function of the key and seed only, so the sample does not depend on stream order.
    """
    if isinstance(key, int):
        data = (key & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
    elif isinstance(key, str):
        data = key.encode("utf-8")
    else:
        data = key
    salt = str(seed).encode("ascii")[:64]
    return int.from_bytes(hashlib.blake2b(data, digest_size=8, key=salt).digest(), "big")


def seed_mask(seed: int) -> int:
    """A 64-bit mask derived from the seed, for :func:`digest_priority`."""
    return int.from_bytes(hashlib.blake2b(str(seed).encode("ascii"), digest_size=8).digest(), "big")


def digest_priority(digest: bytes, mask: int) -> int:
    """The sampling rank of a record whose key is already a uniform hash digest (16 bytes).

    Cheaper than :func:`sample_priority` on the hot path: the digest's second half is
    already uniformly random, and XOR with a seed mask keeps it uniform while making the
    order (and so the sample) depend on the seed.
    """
    return int.from_bytes(digest[8:16], "big") ^ mask


def apportion(total: int, sizes: Mapping[str, int], caps: Mapping[str, int] | None = None) -> dict[str, int]:
    """Split ``total`` over groups in proportion to ``sizes`` (largest-remainder method).

    Each group gets at most its cap (default: its size); what a capped group cannot take
    goes to the others, in proportion again. Ties break on the group name, so the result is
    deterministic. If the caps sum to less than ``total``, every group gets its cap.

    Args:
        total: How many to hand out.
        sizes: Group sizes (the proportions).
        caps: Upper bound per group (default ``sizes``).

    Returns:
        ``{group: share}`` with every group of ``sizes`` present.
    """
    caps = dict(sizes) if caps is None else {name: caps.get(name, 0) for name in sizes}
    shares = {name: 0 for name in sizes}
    remaining = min(total, sum(caps.values()))
    open_groups = [name for name in sorted(sizes) if caps[name] > 0]
    while remaining > 0 and open_groups:
        weight = sum(sizes[name] for name in open_groups)
        if weight <= 0:
            weights = {name: 1.0 for name in open_groups}
            weight = float(len(open_groups))
        else:
            weights = {name: float(sizes[name]) for name in open_groups}
        quotas = {name: remaining * weights[name] / weight for name in open_groups}
        handed = 0
        for name in open_groups:
            give = min(int(math.floor(quotas[name])), caps[name] - shares[name])
            shares[name] += give
            handed += give
        left = remaining - handed
        # Largest remainders first; among equals, the larger group, then the name.
        order = sorted(open_groups, key=lambda name: (-(quotas[name] - math.floor(quotas[name])), -sizes[name], name))
        for name in order:
            if left <= 0:
                break
            if shares[name] < caps[name]:
                shares[name] += 1
                left -= 1
        remaining = left
        open_groups = [name for name in open_groups if shares[name] < caps[name]]
    return shares


# Heap entries are ``(-priority, seq, item)``: heapq is a min-heap, so the negated priority
# keeps the *largest* priority on top, the one evicted first; ``seq`` is unique, so tuple
# comparison never reaches the item.
_Entry = tuple[int, int, Any]


class LabelMixSampler(Generic[T]):
    """A streaming sample of at most ``limit`` items that keeps the label mix.

    Every item gets a seeded priority (:func:`sample_priority` of its key); the sample is
    the lowest priorities of each label, with per-label quotas apportioned from the label
    counts of the *whole* stream (largest remainder), so each label's share in the sample
    is within one item of its share in the stream. Labels present in the stream keep at
    least ``min(count, min_per_label)`` items, so no tool disappears from the sample.

    Memory: each label keeps a heap sized ``1.1 * limit * (its share so far) + reserve``,
    about ``1.1 * limit`` items in total. A label whose share grows late in the stream may
    fall short of its quota; the shortfall goes to the other labels, lowest priority first
    (counted in :attr:`shortfall`).

    ``limit`` None keeps everything.
    """

    def __init__(
        self,
        limit: int | None,
        seed: int,
        *,
        min_per_label: int = 1,
        slack: float = 0.1,
        reserve: int = 32,
        trim_every: int = 8192,
    ) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        self.limit = limit
        self.seed = seed
        self.min_per_label = max(0, min_per_label)
        self._slack = 1.0 + slack
        self._reserve = max(reserve, self.min_per_label)
        self._trim_every = trim_every
        self._heaps: dict[str, list[_Entry]] = {}
        self.label_counts: Counter[str] = Counter()
        self.total = 0
        self.shortfall = 0
        self._seq = 0

    def _capacity(self, label: str) -> int:
        # Share so far, with slack: enough for the final quota while shares stay steady.
        assert self.limit is not None
        share = self.limit * self.label_counts[label] / self.total
        return int(share * self._slack) + self._reserve

    def add(self, key: int | bytes | str, label: str, item: T, priority: int | None = None) -> bool:
        """Offer one item. ``key`` seeds its priority (pass ``priority`` if computed already).

        Returns:
            Whether the item is held now (it may still be evicted by a later one).
        """
        if priority is None:
            priority = sample_priority(key, self.seed)
        self.total += 1
        self.label_counts[label] += 1
        self._seq += 1
        heap = self._heaps.get(label)
        if heap is None:
            heap = self._heaps[label] = []
        kept = True
        if self.limit is None or self.total <= self.limit:
            heapq.heappush(heap, (-priority, self._seq, item))
        else:
            capacity = self._capacity(label)
            if len(heap) < capacity:
                heapq.heappush(heap, (-priority, self._seq, item))
            elif heap and -priority > heap[0][0]:
                heapq.heapreplace(heap, (-priority, self._seq, item))
                while len(heap) > capacity:
                    heapq.heappop(heap)
            else:
                kept = False
        if self.total % self._trim_every == 0:
            self._trim()
        return kept

    def _trim(self) -> None:
        for label, heap in self._heaps.items():
            capacity = self._capacity(label)
            while len(heap) > capacity:
                heapq.heappop(heap)

    @property
    def held(self) -> int:
        """Items currently in memory."""
        return sum(len(heap) for heap in self._heaps.values())

    def quotas(self) -> dict[str, int]:
        """Items per label in the final sample (apportioned from the stream's label counts)."""
        counts = dict(self.label_counts)
        if self.limit is None or self.total <= self.limit:
            return counts
        shares = apportion(self.limit, counts)
        floors = {label: min(count, self.min_per_label) for label, count in counts.items()}
        # Raise small labels to their floor, taking the items from the largest shares.
        for label in sorted(counts):
            while shares[label] < floors[label]:
                donor = max(
                    (name for name in counts if shares[name] > floors[name]),
                    key=lambda name: (shares[name], name),
                    default=None,
                )
                if donor is None:
                    break
                shares[donor] -= 1
                shares[label] += 1
        return shares

    def result(self) -> list[T]:
        """The sample, ordered by priority (a seeded shuffle that does not depend on stream order)."""
        quotas = self.quotas()
        chosen: list[_Entry] = []
        leftovers: list[_Entry] = []
        deficit = 0
        for label in sorted(self._heaps):
            entries = sorted(self._heaps[label], reverse=True)  # lowest priority first
            quota = quotas.get(label, 0)
            chosen.extend(entries[:quota])
            leftovers.extend(entries[quota:])
            deficit += max(0, quota - len(entries))
        if deficit:
            leftovers.sort(reverse=True)
            chosen.extend(leftovers[:deficit])
        self.shortfall = deficit
        chosen.sort(reverse=True)
        return [entry[2] for entry in chosen]


@dataclass
class Split:
    """Indices (into the split sequence) of the eval, train and validation items."""

    eval: list[int]
    train: list[int]
    val: list[int]
    pooled_labels: list[str] = field(default_factory=list)
    not_eval_eligible: int = 0


def pool_rare(labels: Sequence[str], min_label_count: int) -> list[str]:
    """Strata for ``labels``: labels seen fewer than ``min_label_count`` times become ``__rare__``."""
    counts = Counter(labels)
    return [label if counts[label] >= min_label_count else RARE_LABELS for label in labels]


def _group(indices: Iterable[int], strata: Sequence[str]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index in indices:
        groups.setdefault(strata[index], []).append(index)
    return groups


def stratified_split(
    labels: Sequence[str],
    *,
    eval_size: int,
    val_ratio: float,
    seed: int,
    stratify: bool = True,
    min_label_count: int = 2,
    eval_eligible: Sequence[bool] | None = None,
) -> Split:
    """Split items (given by their labels) into eval, then train/val.

    Stratified at both steps: eval takes ``eval_size`` items apportioned over the label
    strata, then validation takes ``round(val_ratio * rest)`` of the rest apportioned again.
    Labels with fewer than ``min_label_count`` items (counted at each step) share one
    ``__rare__`` stratum, so a label of one item never breaks the split. ``stratify=False``
    is a plain seeded shuffle. Deterministic for a seed.

    At least one item stays in train when any remain; with ``val_ratio > 0`` and two or
    more items left, validation gets at least one.

    Args:
        labels: The label of each item, in a deterministic order.
        eval_size: Items for eval (capped at the eligible items).
        val_ratio: Share of the rest for validation, in ``[0, 1)``.
        seed: Random seed.
        stratify: Stratify, or shuffle plainly.
        min_label_count: Labels rarer than this are pooled.
        eval_eligible: Per item, whether it may go to eval (e.g. False for prompts of an
            earlier run's training set). Default: all.

    Returns:
        The :class:`Split` (indices sorted ascending within each part).
    """
    if not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {val_ratio}")
    if eval_size < 0:
        raise ValueError(f"eval_size must be >= 0, got {eval_size}")
    count = len(labels)
    eligible = list(eval_eligible) if eval_eligible is not None else [True] * count
    if len(eligible) != count:
        raise ValueError("eval_eligible must have one entry per label")
    rng = random.Random(seed)
    not_eligible = count - sum(eligible)

    if stratify:
        strata = pool_rare(labels, min_label_count)
        pooled = sorted({label for label, stratum in zip(labels, strata) if stratum == RARE_LABELS})
        groups = _group(range(count), strata)
        for name in sorted(groups):
            rng.shuffle(groups[name])
        sizes = {name: len(members) for name, members in groups.items()}
        caps = {name: sum(1 for index in members if eligible[index]) for name, members in groups.items()}
        shares = apportion(eval_size, sizes, caps)
        eval_indices: list[int] = []
        rest: list[int] = []
        for name in sorted(groups):
            take = shares[name]
            for index in groups[name]:
                if take and eligible[index]:
                    eval_indices.append(index)
                    take -= 1
                else:
                    rest.append(index)
        rest.sort()
        # Second step: strata recomputed on what is left (a label may have become rare).
        rest_labels = [labels[index] for index in rest]
        rest_strata = pool_rare(rest_labels, min_label_count)
        for label, stratum in zip(rest_labels, rest_strata):
            if stratum == RARE_LABELS and label not in pooled:
                pooled.append(label)
        val_total = _val_count(len(rest), val_ratio)
        rest_groups = _group(range(len(rest)), rest_strata)
        for name in sorted(rest_groups):
            rng.shuffle(rest_groups[name])
        val_shares = apportion(val_total, {name: len(members) for name, members in rest_groups.items()})
        val_positions = set()
        for name in sorted(rest_groups):
            val_positions.update(rest_groups[name][: val_shares[name]])
        val = [rest[position] for position in range(len(rest)) if position in val_positions]
        train = [rest[position] for position in range(len(rest)) if position not in val_positions]
        return Split(sorted(eval_indices), train, val, sorted(pooled), not_eligible)

    order = list(range(count))
    rng.shuffle(order)
    eval_indices = []
    rest = []
    for index in order:
        if len(eval_indices) < eval_size and eligible[index]:
            eval_indices.append(index)
        else:
            rest.append(index)
    val_total = _val_count(len(rest), val_ratio)
    return Split(sorted(eval_indices), sorted(rest[val_total:]), sorted(rest[:val_total]), [], not_eligible)


def _val_count(remaining: int, val_ratio: float) -> int:
    if remaining <= 1 or val_ratio <= 0:
        return 0
    wanted = int(math.floor(remaining * val_ratio + 0.5))
    return min(max(wanted, 1), remaining - 1)


@dataclass
class LeakageReport:
    """Outcome of :func:`check_leakage` (hash prefixes only: prompts are not copied into reports)."""

    eval_in_train_or_val: list[str] = field(default_factory=list)
    eval_in_previous_training: list[str] = field(default_factory=list)
    checked_eval: int = 0
    checked_previous: int = 0

    @property
    def leaks(self) -> int:
        """Number of leaked eval prompts, both kinds."""
        return len(self.eval_in_train_or_val) + len(self.eval_in_previous_training)

    def as_dict(self) -> dict[str, Any]:
        """Counts and up to five hash prefixes per kind, for reports."""
        return {
            "eval_in_train_or_val": len(self.eval_in_train_or_val),
            "eval_in_previous_training": len(self.eval_in_previous_training),
            "checked_eval": self.checked_eval,
            "checked_previous": self.checked_previous,
            "examples": [h[:12] for h in (self.eval_in_train_or_val + self.eval_in_previous_training)[:5]],
        }


def check_leakage(
    eval_hashes: Iterable[str],
    train_hashes: Iterable[str],
    previous_train_hashes: Iterable[str] = (),
    *,
    raise_on_leak: bool = True,
) -> LeakageReport:
    """Check that no eval prompt hash is in this run's train/val or an earlier run's training set.

    Args:
        eval_hashes: Prompt hashes of the eval set.
        train_hashes: Prompt hashes of this run's train and validation sets.
        previous_train_hashes: Prompt hashes of earlier runs' training sets (optional).
        raise_on_leak: Raise :class:`LeakageError` on any leak (else only report).

    Returns:
        The report.

    Raises:
        LeakageError: when ``raise_on_leak`` and a leak is found; the message counts them.
    """
    eval_list = list(eval_hashes)
    current = set(train_hashes)
    previous = set(previous_train_hashes)
    report = LeakageReport(
        eval_in_train_or_val=[h for h in eval_list if h in current],
        eval_in_previous_training=[h for h in eval_list if h in previous],
        checked_eval=len(eval_list),
        checked_previous=len(previous),
    )
    if report.leaks and raise_on_leak:
        parts = []
        if report.eval_in_train_or_val:
            parts.append(
                f"{len(report.eval_in_train_or_val)} eval prompt(s) also in this run's train/val "
                f"(e.g. hash {report.eval_in_train_or_val[0][:12]}); dedup should make this impossible: "
                "check that every record went through the same prompt hash"
            )
        if report.eval_in_previous_training:
            parts.append(
                f"{len(report.eval_in_previous_training)} eval prompt(s) were in an earlier run's training set "
                f"(e.g. hash {report.eval_in_previous_training[0][:12]}); scores against models trained on them "
                "would be inflated: provide more fresh records (a longer window) or drop the stale history"
            )
        raise LeakageError("Data leakage: " + "; ".join(parts) + ".")
    return report
