"""Tool schemas, argument extraction from user text, and tool-call comparison.

Used by the emulator's models (to fill a tool call's arguments from the request) and by
the evaluation runner and judge (to compare tool calls). Pure and deterministic.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

from include.nemo_emulator._brain_text import stem

# --------------------------------------------------------------------------------------
# Tool schemas
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec:
    """One function tool of a chat request, flattened from the OpenAI ``tools`` format."""

    name: str
    description: str
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    required: tuple[str, ...] = ()


def parse_tools(tools: Any) -> list[ToolSpec]:
    """Read an OpenAI ``tools`` list into :class:`ToolSpec` objects.

    Accepts ``[{"type": "function", "function": {...}}]`` and the bare ``[{"name": ...}]``
    form some clients send. ``None`` or an empty list means no tools.

    Raises:
        ValueError: when ``tools`` is not a list of function tools with a name.
    """
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise ValueError(f"request.tools must be a list of function tools, got {type(tools).__name__}.")
    specs: list[ToolSpec] = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise ValueError(f"request.tools[{index}] must be an object, got {type(tool).__name__}.")
        function = tool.get("function", tool)
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise ValueError(
                f"request.tools[{index}] has no function name: expected "
                '{"type": "function", "function": {"name": ..., "parameters": {...}}}.'
            )
        parameters = function.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError(f"request.tools[{index}].function.parameters must be a JSON schema object.")
        properties = parameters.get("properties") or {}
        if not isinstance(properties, dict):
            raise ValueError(f"request.tools[{index}].function.parameters.properties must be an object.")
        required = parameters.get("required") or []
        specs.append(
            ToolSpec(
                name=function["name"],
                description=str(function.get("description") or ""),
                properties={str(k): (v if isinstance(v, dict) else {}) for k, v in properties.items()},
                required=tuple(str(r) for r in required if isinstance(r, str)),
            )
        )
    return specs


def name_words(identifier: str) -> str:
    """``get_order_status`` / ``getOrderStatus`` -> ``get order status``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", identifier)
    return re.sub(r"[_\-.:/]+", " ", spaced).lower().strip()


# --------------------------------------------------------------------------------------
# Entities found in user text
# --------------------------------------------------------------------------------------

_EMAIL_RE = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_ISO_DATE_RE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_US_DATE_RE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4})\b")
_MONEY_RE = re.compile(
    r"(?:[$€£]\s?(\d+(?:[.,]\d{1,2})?))|(?:\b(\d+(?:\.\d{1,2})?)\s?(?:dollars|usd|euros|eur|bucks)\b)",
    re.IGNORECASE,
)
_PHONE_RE = re.compile(r"(?<!\w)\+?\d[\d ().-]{7,}\d\b")
# A code mixes letters and digits (ORD-12345, 1Z999AA1, SKU-4411) or joins digit groups
# with dashes; a bare run of digits is a number.
_CODE_RE = re.compile(r"(?<![\w@.-])#?([A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)*)(?![\w@-])")
_NUMBER_RE = re.compile(r"(?<![\w.#-])(\d+(?:\.\d+)?)(?![\w-]|\.\d)")
_QUOTED_RE = re.compile(r"\"([^\"\n]{2,200})\"|“([^”\n]{2,200})”")
_REASON_RE = re.compile(
    r"\b(?:because|since|reason(?: is|:)?|due to)\s+(.{3,200}?)(?:[.!?](?:\s|$)|$)", re.IGNORECASE
)
_ADDRESS_RE = re.compile(
    r"\b\d{1,6}\s+(?:[A-Z][a-zA-Z]*\.?\s+){1,4}"
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Way|Court|Ct|Place|Pl|Terrace|Parkway|Pkwy)"
    r"\b\.?(?:,?\s*(?:Apt|Suite|Unit)\.?\s*\w+)?"
)
_PLACE_RE = re.compile(r"\b(?:in|near|around|at|close to)\s+((?:[A-Z][a-zA-Z]+)(?:\s+[A-Z][a-zA-Z]+){0,2})")
_NUMBER_WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "a couple of": 2, "a pair of": 2, "a dozen": 12,
}  # fmt: skip
_NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")\b", re.I)


@dataclass(frozen=True)
class Entity:
    """A value found in text, with its kind and character span."""

    kind: str  # email | date | money | phone | code | number | quoted | reason | address | place
    value: Any
    start: int
    end: int
    raw: str


def _is_code(token: str) -> bool:
    has_digit = any(c.isdigit() for c in token)
    has_alpha = any(c.isalpha() for c in token)
    return has_digit and (has_alpha or "-" in token or "_" in token) and len(token) >= 3


def find_entities(text: str) -> list[Entity]:
    """Every typed value of ``text``, most specific kinds first, spans non-overlapping.

    Free-text kinds (``quoted``, ``reason``, ``address``, ``place``) may overlap the others:
    they are alternatives for text parameters, not competitors of ids and numbers.
    """
    text = text or ""
    taken: list[tuple[int, int]] = []
    found: list[Entity] = []

    def free(start: int, end: int) -> bool:
        return all(end <= s or start >= e for s, e in taken)

    def add(kind: str, value: Any, start: int, end: int, exclusive: bool = True) -> None:
        if exclusive and not free(start, end):
            return
        if exclusive:
            taken.append((start, end))
        found.append(Entity(kind, value, start, end, text[start:end]))

    for m in _EMAIL_RE.finditer(text):
        add("email", m.group(0), m.start(), m.end())
    for m in _ISO_DATE_RE.finditer(text):
        add("date", m.group(0), m.start(), m.end())
    for m in _US_DATE_RE.finditer(text):
        month, day, year = int(m.group(1)), int(m.group(2)), int(m.group(3))
        if 1 <= month <= 12 and 1 <= day <= 31:
            add("date", f"{year:04d}-{month:02d}-{day:02d}", m.start(), m.end())
    for m in _MONEY_RE.finditer(text):
        raw = (m.group(1) or m.group(2)).replace(",", ".")
        add("money", float(raw), m.start(), m.end())
    for m in _PHONE_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if 10 <= len(digits) <= 15 and re.search(r"[ ().+-]", m.group(0)):
            add("phone", m.group(0).strip(), m.start(), m.end())
    for m in _CODE_RE.finditer(text):
        if _is_code(m.group(1)):
            add("code", m.group(1), m.start(1), m.end(1))
    for m in _NUMBER_RE.finditer(text):
        raw = m.group(1)
        add("number", float(raw) if "." in raw else int(raw), m.start(1), m.end(1))
    for m in _NUMBER_WORD_RE.finditer(text):
        add("number", _NUMBER_WORDS[m.group(1).lower()], m.start(), m.end())
    for m in _QUOTED_RE.finditer(text):
        value = m.group(1) or m.group(2)
        add("quoted", value.strip(), m.start(), m.end(), exclusive=False)
    for m in _ADDRESS_RE.finditer(text):
        add("address", m.group(0).strip().rstrip("."), m.start(), m.end(), exclusive=False)
    for m in _REASON_RE.finditer(text):
        add("reason", m.group(1).strip(), m.start(1), m.end(1), exclusive=False)
    for m in _PLACE_RE.finditer(text):
        add("place", m.group(1), m.start(1), m.end(1), exclusive=False)
    found.sort(key=lambda e: (e.start, e.end, e.kind))
    return found


# --------------------------------------------------------------------------------------
# Argument extraction
# --------------------------------------------------------------------------------------


def _shape(token: str) -> str:
    """``ORD-12345`` -> ``A-9``: the layout of a code, ignoring its length."""
    return re.sub(r"\d+", "9", re.sub(r"[A-Za-z]+", "A", token))


def _prefix(token: str) -> str:
    m = re.match(r"[A-Za-z]+", token)
    return m.group(0).upper() if m else ""


def _role(prop_name: str, schema: dict[str, Any]) -> str:
    """What kind of value a parameter takes, from its name, type and format."""
    name = name_words(prop_name)
    name_tokens = name.split()
    fmt = str(schema.get("format") or "").lower()
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), None)
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return "enum"
    if typ == "boolean":
        return "boolean"
    if typ in ("array", "object"):
        return "unsupported"
    if fmt == "email" or "email" in name_tokens or "mail" in name_tokens:
        return "email"
    if fmt in ("date", "date-time") or "date" in name_tokens or "day" in name_tokens:
        return "date"
    if "phone" in name_tokens or "mobile" in name_tokens:
        return "phone"
    if {"zip", "zipcode", "postal", "postcode"} & set(name_tokens):
        return "zip"
    if "address" in name_tokens:
        return "address"
    last = name_tokens[-1] if name_tokens else ""
    if last in ("id", "number", "code", "sku", "no", "num", "ref", "reference") or name.endswith("id"):
        if typ in ("integer", "number") and last != "id":
            return "number"
        return "code"
    if typ in ("integer", "number"):
        if {"amount", "price", "cost", "total", "refund", "budget"} & set(name_tokens):
            return "money"
        return "number"
    if {"reason", "note", "notes", "comment", "message", "description", "feedback", "details"} & set(name_tokens):
        return "reason"
    if {"city", "location", "place", "area", "region", "town", "store", "neighborhood"} & set(name_tokens):
        return "place"
    if {"query", "question", "text", "search", "keyword", "keywords", "term"} & set(name_tokens):
        return "quoted"
    return "string"


def _code_hints(prop_name: str, schema: dict[str, Any], use_descriptions: bool) -> list[str]:
    hints: list[str] = []
    for key in ("examples", "example", "default"):
        value = schema.get(key)
        values = value if isinstance(value, list) else [value]
        hints.extend(str(v) for v in values if isinstance(v, (str, int)) and _is_code(str(v)))
    if use_descriptions:
        for m in _CODE_RE.finditer(str(schema.get("description") or "")):
            if _is_code(m.group(1)):
                hints.append(m.group(1))
    return hints


def _score_code(candidate: str, prop_name: str, schema: dict[str, Any], hints: list[str]) -> float:
    score = 0.0
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        try:
            if re.fullmatch(pattern, candidate):
                score += 3.0
        except re.error:
            pass
    for hint in hints:
        if _prefix(hint) and _prefix(hint) == _prefix(candidate):
            score += 2.0
            break
    for hint in hints:
        if _shape(hint) == _shape(candidate):
            score += 1.0
            break
    first = name_words(prop_name).split()[0] if name_words(prop_name) else ""
    if len(first) >= 3 and candidate.lower().startswith(first[:3]):
        score += 1.0
    return score


def _match_enum(values: list[Any], text: str) -> Any:
    """The enum value named in ``text`` (longest match wins), or ``None``."""
    lowered = text.lower()
    # All words count here (not only content words): "too slow" must match "too_slow".
    text_stems = {stem(w) for w in re.findall(r"[a-z]+", lowered)}
    best: tuple[int, int, Any] | None = None
    for order, value in enumerate(values):
        if not isinstance(value, str) or not value:
            if isinstance(value, (int, float)) and re.search(rf"(?<![\d.]){re.escape(str(value))}(?![\d.])", text):
                candidate = (len(str(value)), -order, value)
                best = candidate if best is None or candidate > best else best
            continue
        phrase = name_words(value)
        hit = re.search(r"\b" + re.escape(phrase) + r"\b", lowered) or re.search(
            r"\b" + re.escape(value.lower()) + r"\b", lowered
        )
        if not hit:
            stems = [stem(w) for w in phrase.split() if w]
            meaningful = [s for s in stems if len(s) > 1]
            hit = bool(meaningful) and all(s in text_stems for s in meaningful)
        if hit:
            candidate = (len(phrase), -order, value)
            best = candidate if best is None or candidate > best else best
    return None if best is None else best[2]


def _coerce_number(value: Any, schema: dict[str, Any]) -> Any:
    if schema.get("type") == "integer" and isinstance(value, float):
        return int(value) if value.is_integer() else None
    if schema.get("type") == "string":
        return str(value)
    return value


def extract_arguments(
    tool: ToolSpec,
    text: str,
    *,
    use_descriptions: bool = True,
    only: list[str] | None = None,
    hints: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fill a tool's arguments from the values present in ``text``.

    Each parameter takes a value of its kind (enum value named in the text, email, date,
    code, number, money, address, place, quoted or "because ..." text); a value is used
    for one parameter only. Parameters with no value in the text are left out.

    Args:
        tool: the tool whose ``properties`` say what to look for.
        text: the user text to read the values from.
        use_descriptions: whether parameter descriptions may be read for format hints
            (small models skip them).
        only: restrict to these parameter names (in this order); a name missing from the
            schema is treated as a string parameter.
        hints: known example values per parameter (e.g. a trained value), used as format hints.

    Returns:
        The arguments found, in schema order (or ``only`` order).
    """
    entities = find_entities(text)
    used: list[tuple[int, int]] = []
    names = list(only) if only is not None else list(tool.properties)
    schemas = {n: dict(tool.properties.get(n) or {}) for n in names}
    hints = hints or {}
    for n in names:
        if n not in tool.properties and n in hints:
            schemas[n] = _schema_from_value(hints[n])

    def available(e: Entity) -> bool:
        return all(e.end <= s or e.start >= t for s, t in used)

    roles = {n: _role(n, schemas[n]) for n in names}
    order = [
        "enum", "email", "date", "phone", "zip", "code", "money", "number",
        "address", "place", "reason", "quoted", "string", "boolean", "unsupported",
    ]  # fmt: skip
    found: dict[str, Any] = {}
    for n in sorted(names, key=lambda x: (order.index(roles[x]), names.index(x))):
        schema, role = schemas[n], roles[n]
        chosen: Entity | None = None
        value: Any = None
        if role == "enum":
            value = _match_enum(list(schema["enum"]), text)
        elif role in ("email", "date", "phone", "address", "place", "reason"):
            chosen = next((e for e in entities if e.kind == role and available(e)), None)
            if chosen is None and role == "reason":
                chosen = next((e for e in entities if e.kind == "quoted" and available(e)), None)
        elif role == "zip":
            chosen = next(
                (
                    e
                    for e in entities
                    if available(e)
                    and (
                        (e.kind == "number" and isinstance(e.value, int) and len(e.raw) == 5)
                        or (e.kind == "code" and re.fullmatch(r"\d{5}-\d{4}|[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}", e.raw))
                    )
                ),
                None,
            )
            if chosen is not None:
                value = chosen.raw
        elif role == "code":
            code_hints = _code_hints(n, schema, use_descriptions)
            if n in hints and isinstance(hints[n], (str, int)) and _is_code(str(hints[n])):
                code_hints.append(str(hints[n]))
            # A bare run of 4+ digits may be an id too ("order 10234").
            candidates = [
                e
                for e in entities
                if available(e)
                and (e.kind == "code" or (e.kind == "number" and isinstance(e.value, int) and len(e.raw) >= 4))
            ]
            if candidates:
                scored = [(_score_code(e.raw, n, schema, code_hints), -i, e) for i, e in enumerate(candidates)]
                best = max(scored, key=lambda t: (t[0], t[1]))
                # With format hints, a candidate that matches none of them is not this id.
                if not code_hints or best[0] > 0:
                    chosen = best[2]
                    numeric = chosen.kind == "number" and schema.get("type") in ("integer", "number")
                    value = chosen.value if numeric else chosen.raw
        elif role == "money":
            chosen = next((e for e in entities if e.kind == "money" and available(e)), None) or next(
                (e for e in entities if e.kind == "number" and available(e)), None
            )
        elif role == "number":
            chosen = next((e for e in entities if e.kind == "number" and available(e)), None) or next(
                (e for e in entities if e.kind == "money" and available(e)), None
            )
        elif role in ("quoted", "string"):
            chosen = next((e for e in entities if e.kind == "quoted" and available(e)), None)
        if chosen is not None and value is None:
            value = chosen.value
            if role in ("money", "number"):
                value = _coerce_number(value, schema)
        if value is None:
            continue
        if chosen is not None and role not in ("address", "place", "reason", "quoted", "string"):
            used.append((chosen.start, chosen.end))
        found[n] = value
    return {n: found[n] for n in names if n in found}


def _schema_from_value(value: Any) -> dict[str, Any]:
    """A guessed JSON schema for a parameter known only from an example value."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer", "examples": [value]}
    if isinstance(value, float):
        return {"type": "number", "examples": [value]}
    if isinstance(value, str):
        if _EMAIL_RE.fullmatch(value):
            return {"type": "string", "format": "email"}
        if _ISO_DATE_RE.fullmatch(value):
            return {"type": "string", "format": "date"}
        return {"type": "string", "examples": [value]}
    return {"type": "object"}


def adapt_arguments(
    learned: dict[str, Any], tool: ToolSpec | None, text: str, *, use_descriptions: bool = True
) -> dict[str, Any]:
    """Re-fill learned arguments (an example's or a training row's) from the current text.

    Each learned key takes the value of the same kind found in ``text``; when the text has
    none, the learned value is kept (what a model that memorised the example would do).
    """
    spec = tool or ToolSpec(name="", description="")
    extracted = extract_arguments(spec, text, use_descriptions=use_descriptions, only=list(learned), hints=learned)
    return {k: extracted.get(k, learned[k]) for k in learned}


# --------------------------------------------------------------------------------------
# Tool-call parsing and comparison
# --------------------------------------------------------------------------------------


def parse_json_or_literal(text: str) -> Any:
    """Parse JSON, or a Python literal (a template rendered without ``tojson``).

    Raises:
        ValueError: when ``text`` is neither.
    """
    stripped = (text or "").strip()
    try:
        return json.loads(stripped)
    except (json.JSONDecodeError, TypeError):
        pass
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise ValueError(f"not JSON: {stripped[:80]!r}") from None


def normalize_tool_calls(value: Any) -> list[dict[str, Any]]:
    """Tool calls in any common form -> ``[{"name": str, "arguments": <parsed>}]``.

    Accepts ``None``/``""``/``"null"``/``[]`` (no call), a JSON string of the list, OpenAI
    ``[{"type": "function", "function": {"name", "arguments"}}]`` and the flat
    ``[{"name", "arguments"}]`` form; a single call object is treated as a one-item list.
    String arguments are parsed as JSON (kept as the raw string when they are not JSON, so
    they still compare, but never equal a parsed object).

    Raises:
        ValueError: when ``value`` is not tool calls.
    """
    if isinstance(value, str):
        if not value.strip():
            return []
        value = parse_json_or_literal(value)
    if value is None:
        return []
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"tool calls must be a list of calls, got {type(value).__name__}.")
    calls: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"tool call {index} must be an object, got {type(item).__name__}.")
        function = item.get("function") if isinstance(item.get("function"), dict) else item
        name = function.get("name")
        if not isinstance(name, str):
            raise ValueError(f"tool call {index} has no function name.")
        arguments = function.get("arguments")
        if arguments is None:
            arguments = {}
        elif isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except json.JSONDecodeError:
                pass
        calls.append({"name": name, "arguments": arguments})
    return calls


def _canonical(value: Any, *, loose: bool) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        return " ".join(value.split()).casefold() if loose else value
    if isinstance(value, dict):
        return {str(k): _canonical(v, loose=loose) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, loose=loose) for v in value]
    return str(value)


def call_key(call: dict[str, Any], *, loose: bool = False) -> str:
    """A canonical string for one normalised call (name + arguments, keys sorted)."""
    return json.dumps([call["name"], _canonical(call["arguments"], loose=loose)], sort_keys=True)


def names_match(expected: list[dict[str, Any]], predicted: list[dict[str, Any]]) -> bool:
    """Whether the two lists call the same multiset of function names."""
    return sorted(c["name"] for c in expected) == sorted(c["name"] for c in predicted)


def calls_match(expected: list[dict[str, Any]], predicted: list[dict[str, Any]], *, loose: bool = False) -> bool:
    """Whether the two lists make the same calls (names and arguments), in any order.

    ``loose`` also ignores case and extra whitespace in string arguments (the judge's view).
    """
    return sorted(call_key(c, loose=loose) for c in expected) == sorted(call_key(c, loose=loose) for c in predicted)
