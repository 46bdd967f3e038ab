"""Text primitives of the emulator's models: tokens, stems, sparse vectors, similarity.

Everything here is a pure, deterministic function of its input. Hashing goes through
``hashlib`` (never ``hash()``, which depends on ``PYTHONHASHSEED``), and no output ever
depends on the iteration order of a ``set``.
"""

from __future__ import annotations

import hashlib
import math
import re
from functools import lru_cache

# Words that carry no intent. Removing them makes "Where is my order?" and "order status"
# look alike, which is what a bag-of-words model of intent needs.
STOPWORDS = frozenset(
    """
    a about above after again against all am an and any are aren't as at be because been before
    being below between both but by can can't cannot could couldn't did didn't do does doesn't doing
    don't down during each few for from further had hadn't has hasn't have haven't having he her here
    hers herself him himself his how i i'd i'll i'm i've if in into is isn't it it's its itself just
    let's me more most mustn't my myself no nor not of off on once only or other ought our ours
    ourselves out over own same she should shouldn't so some such than that that's the their theirs
    them themselves then there there's these they this those through to too under until up very was
    wasn't we were weren't what what's when where where's which while who whom why with won't would
    wouldn't you you'd you'll you're you've your yours yourself yourselves
    hi hello hey please thanks thank thx pls kindly hmm ok okay yes yeah also still already
    want wanted need needs like would could get got give tell know let help me im ive id dont cant
    """.split()
)

_WORD_RE = re.compile(r"[a-z][a-z']*[a-z]|[a-z]")
_COUNT_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_SPACE_RE = re.compile(r"\s+")


def count_tokens(text: str) -> int:
    """Count tokens with a simple word/punctuation tokenizer (for ``usage`` fields)."""
    return len(_COUNT_TOKEN_RE.findall(text or ""))


def normalize_space(text: str) -> str:
    """Collapse whitespace and case-fold, for equality checks that ignore formatting."""
    return _SPACE_RE.sub(" ", (text or "").strip()).casefold()


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """Strip common English suffixes so "cancelled", "cancelling" and "cancel" meet.

    A light, rule-based stemmer: good enough for intent matching, and deterministic.
    """
    w = word.lower().strip("'")
    if w.endswith("'s"):
        w = w[:-2]
    for suffix, min_len, replacement in (
        ("ations", 8, "ate"),
        ("ation", 7, "ate"),
        ("ments", 7, ""),
        ("ment", 6, ""),
        ("ings", 6, ""),
        ("ing", 5, ""),
        ("ies", 4, "y"),
        ("ied", 4, "y"),
        ("sses", 5, "ss"),
        ("ches", 5, "ch"),
        ("shes", 5, "sh"),
        ("xes", 4, "x"),
        ("ed", 4, ""),
        ("s", 4, ""),
    ):
        if w.endswith(suffix) and len(w) >= min_len and not (suffix == "s" and w.endswith("ss")):
            w = w[: len(w) - len(suffix)] + replacement
            break
    # "cancell" (from "cancelled") and "cancel" should meet; "shipp" and "ship" too.
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiousz":
        w = w[:-1]
    # "chang" (from "changed"/"changing") and "change" should meet.
    if len(w) > 3 and w.endswith("e") and not w.endswith("ee"):
        w = w[:-1]
    return w


def words(text: str) -> list[str]:
    """Lower-case alphabetic words of ``text`` in order (digits and ids are left out)."""
    return _WORD_RE.findall((text or "").lower())


def content_stems(text: str) -> list[str]:
    """Stems of the words of ``text`` that carry meaning (stop words removed), in order."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and len(w) > 1]


def features(text: str) -> dict[str, float]:
    """Weighted sparse features of ``text``: word stems, stem bigrams and char trigrams.

    Tokens containing digits are ignored on purpose: two requests about different order
    numbers are the same request as far as intent is concerned.
    """
    stems = content_stems(text)
    if not stems:
        # A text made only of stop words still deserves a vector of its own.
        stems = [stem(w) for w in words(text)]
    feats: dict[str, float] = {}
    if not stems:
        feats["<empty>"] = 1.0
        return feats
    for s in stems:
        key = "w:" + s
        feats[key] = feats.get(key, 0.0) + 1.0
        padded = "^" + s + "$"
        for i in range(len(padded) - 2):
            gram = "c:" + padded[i : i + 3]
            feats[gram] = feats.get(gram, 0.0) + 0.15
    for first, second in zip(stems, stems[1:]):
        key = "b:" + first + "_" + second
        feats[key] = feats.get(key, 0.0) + 0.5
    return feats


def vector(text: str) -> dict[str, float]:
    """L2-normalised sparse feature vector of ``text`` (never empty)."""
    feats = features(text)
    norm = math.sqrt(sum(v * v for v in feats.values()))
    return {k: v / norm for k, v in feats.items()}


def cosine(a: dict[str, float], b: dict[str, float]) -> float:
    """Cosine similarity of two L2-normalised sparse vectors."""
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(k, 0.0) for k, v in a.items())


@lru_cache(maxsize=262144)
def _bucket(feature: str, dimensions: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    # Signed hashing: collisions cancel out on average instead of inflating similarity.
    return value % dimensions, (1.0 if (value >> 63) & 1 else -1.0)


def dense_embedding(text: str, dimensions: int = 384) -> list[float]:
    """Hash the sparse features of ``text`` into a dense, L2-normalised vector."""
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
        raise ValueError(f"dimensions must be a positive integer, got {dimensions!r}.")
    dense = [0.0] * dimensions
    for feature, weight in features(text).items():
        index, sign = _bucket(feature, dimensions)
        dense[index] += sign * weight
    norm = math.sqrt(sum(v * v for v in dense))
    if norm == 0.0:
        # All features cancelled out (possible only for tiny dimensions): fall back to a
        # deterministic unit vector so callers can always rely on the norm being 1.
        index, _ = _bucket("<empty>", dimensions)
        dense[index] = 1.0
        return dense
    return [v / norm for v in dense]


def token_f1(reference: str, candidate: str) -> float:
    """Token-set F1 between the content stems of two texts (0 when either is empty)."""
    ref = set(content_stems(reference))
    cand = set(content_stems(candidate))
    if not ref or not cand:
        return 0.0
    common = len(ref & cand)
    if common == 0:
        return 0.0
    precision = common / len(cand)
    recall = common / len(ref)
    return 2 * precision * recall / (precision + recall)


def text_similarity(reference: str, candidate: str) -> float:
    """Similarity in [0, 1] of two answers: mean of token-set F1 and feature cosine."""
    if normalize_space(reference) == normalize_space(candidate):
        return 1.0
    if not (reference or "").strip() or not (candidate or "").strip():
        return 0.0
    cos = max(0.0, cosine(vector(reference), vector(candidate)))
    return 0.5 * token_f1(reference, candidate) + 0.5 * cos


def stable_unit(*parts: str) -> float:
    """A deterministic pseudo-random number in [0, 1) derived from ``parts``."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def stable_id(prefix: str, *parts: str, length: int = 24) -> str:
    """A deterministic identifier such as ``chatcmpl-<hex>`` derived from ``parts``."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return prefix + digest[:length]


# General-purpose synonym groups: the "world knowledge" that lets a base model see that
# "parcel" is about a shipment or "void" about cancelling. Larger models know more groups
# (see ``known_synonyms``); none of this is tied to a particular dataset.
SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("order", "purchase", "buy", "bought", "checkout"),
    ("cancel", "void", "abort", "revoke", "terminate", "scrap", "withdraw"),
    ("refund", "reimburse", "repay", "chargeback", "money", "compensate"),
    ("shipment", "package", "parcel", "delivery", "courier", "carrier", "box"),
    ("track", "locate", "trace", "whereabouts", "follow"),
    ("address", "relocate", "moved", "redirect", "destination"),
    ("password", "login", "log", "sign", "credential", "passcode", "locked"),
    ("reset", "recover", "forgot", "forgotten", "restore"),
    ("store", "shop", "outlet", "branch", "showroom", "boutique"),
    ("nearest", "closest", "nearby", "near", "around", "close"),
    ("stock", "available", "availability", "inventory", "sold", "shelf", "shelves", "left"),
    ("product", "item", "article", "sku", "merchandise"),
    ("status", "update", "progress", "stage", "state", "processed"),
    ("price", "cost", "charge", "fee", "overcharged", "expensive"),
    ("book", "reserve", "reservation", "appointment", "schedule"),
    ("weather", "forecast", "temperature", "rain"),
    ("email", "mail", "inbox"),
    ("search", "find", "lookup", "look", "query", "seek"),
    ("create", "add", "new", "open", "make", "register"),
    ("delete", "remove", "erase", "drop", "discard"),
    ("change", "modify", "edit", "switch", "alter", "amend"),
    ("invoice", "bill", "receipt", "statement"),
    ("flight", "plane", "airline", "fly"),
    ("hotel", "room", "accommodation", "lodging"),
    ("meeting", "calendar", "event", "call"),
    ("payment", "pay", "card", "paid"),
    ("subscription", "plan", "membership", "renew"),
    ("account", "profile", "user", "customer"),
    ("send", "transmit", "dispatch", "ship", "mail"),
    ("hour", "open", "opening", "closing", "time"),
    ("broken", "damaged", "defective", "faulty", "cracked"),
    ("return", "exchange", "send back"),
)


@lru_cache(maxsize=16)
def known_synonyms(capacity: float) -> dict[str, tuple[str, ...]]:
    """Stem -> stems of the same meaning, for the synonym groups a model of ``capacity`` knows.

    A group is known when its deterministic draw is under ``0.3 + 0.7 * capacity``: a 1B
    model knows about a third of them, a 70B model all, and a larger model always knows
    what a smaller one does.
    """
    table: dict[str, list[str]] = {}
    for group in SYNONYM_GROUPS:
        if stable_unit("lexicon", group[0]) >= 0.3 + 0.7 * capacity:
            continue
        stems = [stem(w) for w in group if " " not in w]
        for s in stems:
            bucket = table.setdefault(s, [])
            bucket.extend(t for t in stems if t != s and t not in bucket)
    return {k: tuple(v) for k, v in table.items()}


def expand_stems(stems: list[str], capacity: float) -> list[str]:
    """``stems`` plus the synonyms a model of ``capacity`` knows for them (order kept)."""
    table = known_synonyms(round(capacity, 3))
    out = list(stems)
    for s in stems:
        for synonym in table.get(s, ()):
            if synonym not in out:
                out.append(synonym)
    return out


def idf_table(documents: list[dict[str, float]]) -> tuple[dict[str, float], float]:
    """Smoothed inverse document frequency of each feature over ``documents``.

    Returns the table and the weight of a feature no document has. Words that every
    request shares ("order") count less than the ones that tell requests apart ("refund").
    """
    df: dict[str, int] = {}
    for doc in documents:
        for feature in doc:
            df[feature] = df.get(feature, 0) + 1
    n = len(documents)
    return {f: math.log((n + 1) / (c + 1)) + 1.0 for f, c in df.items()}, math.log(n + 1) + 1.0


def weighted_vector(text: str, idf: dict[str, float], unseen: float) -> dict[str, float]:
    """L2-normalised TF-IDF sparse vector of ``text`` under ``idf``."""
    feats = {k: v * idf.get(k, unseen) for k, v in features(text).items()}
    norm = math.sqrt(sum(v * v for v in feats.values()))
    return {k: v / norm for k, v in feats.items()}
