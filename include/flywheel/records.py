"""The log record: validation, normalization, workload type, label and prompt hash.

A log record is one logged LLM call (DESIGN section 4): ``workload_id``, ``client_id``,
``timestamp``, an OpenAI chat ``request`` and an OpenAI chat.completion ``response``.
:func:`parse_record` checks one raw record (a dict from a log source) and returns a
:class:`LogRecord`, or raises :class:`RecordRejected` carrying a stable snake_case
:class:`DropReason` that the pipeline counts.

Normal form, inside this package:

* tool-call ``arguments`` are parsed JSON objects, whether the log stored a JSON string
  (OpenAI) or an object (some instrumentations); they are stringified again only where the
  OpenAI format requires a string (:meth:`LogRecord.to_openai_record`, the evaluator files);
* an assistant message carrying ``tool_calls`` has ``content`` ``None`` when the log had it
  null or absent (both valid OpenAI);
* only the first response choice is kept: it is the reference answer of every dataset.

This runs once per extracted record, millions of times per run, and most records are then
dropped (duplicates, sampled out): :func:`parse_record` only validates (plain dict/list
operations, exact type checks first) and keeps what the checks produced; the normal form is
built when first read, and shares the objects that need no change with the raw record.
``workload_mismatch`` is counted by the pipeline, which knows the run's workload.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from enum import Enum
from typing import Any

NO_TOOL = "no_tool"

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_loads = json.JSONDecoder().decode


class WorkloadType(str, Enum):
    """How a workload is evaluated: tool-calling metrics, or an LLM-judge similarity."""

    TOOL_CALLING = "tool_calling"
    GENERIC = "generic"


class DropReason(str, Enum):
    """Why a record was left out. The values are stable: they are keys in the results store."""

    # Step 1: format validation.
    NOT_AN_OBJECT = "not_an_object"
    WORKLOAD_MISMATCH = "workload_mismatch"
    MISSING_REQUEST = "missing_request"
    MISSING_MESSAGES = "missing_messages"
    EMPTY_MESSAGES = "empty_messages"
    INVALID_MESSAGE = "invalid_message"
    NO_USER_MESSAGE = "no_user_message"
    INVALID_TOOLS = "invalid_tools"
    MISSING_RESPONSE = "missing_response"
    MISSING_CHOICES = "missing_choices"
    MISSING_RESPONSE_MESSAGE = "missing_response_message"
    INVALID_RESPONSE_MESSAGE = "invalid_response_message"
    EMPTY_RESPONSE = "empty_response"
    # Step 3: tool-calling quality.
    NO_TOOL_CALLS = "no_tool_calls"
    INVALID_TOOL_CALL = "invalid_tool_call"
    TOOL_CALL_NOT_FUNCTION = "tool_call_not_function"
    UNPARSEABLE_ARGUMENTS = "unparseable_arguments"
    UNKNOWN_TOOL = "unknown_tool"


class RecordRejected(ValueError):
    """A record failed a check. ``reason`` is counted; ``detail`` says where and what."""

    def __init__(self, reason: DropReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class LogRecord:
    """A validated log record; its normalized form is built on first use.

    :func:`parse_record` runs on every record of a stream but most records are then dropped
    (duplicates, sampled out), so it only validates and keeps what the checks produced (the
    parsed arguments, the user turns, the prompt digest). The normalized ``request`` and
    ``response`` are built when first read.

    Attributes:
        raw: The record as read (its top-level keys other than request/response are kept).
        digest: 16-byte digest of the normalized user turns.
        dedup_key: The first 64 bits of ``digest`` as an int (a compact key for large sets).
        tool_names: Function names of the response's tool calls, in order.
        label: The first tool name, or ``no_tool``: the stratification label.
    """

    __slots__ = (
        "raw",
        "digest",
        "dedup_key",
        "tool_names",
        "label",
        "_user_turns",
        "_raw_request",
        "_raw_response",
        "_response_arguments",
        "_history_arguments",
        "_request",
        "_response",
        "_response_message",
    )

    def __init__(
        self,
        raw: dict[str, Any],
        digest: bytes,
        user_turns: list[str],
        tool_names: tuple[str, ...],
        response_arguments: list[dict[str, Any]],
        history_arguments: list[tuple[int, list[dict[str, Any]]]] | None,
    ) -> None:
        self.raw = raw
        self.digest = digest
        self.dedup_key = int.from_bytes(digest[:8], "big")
        self.tool_names = tool_names
        self.label = tool_names[0] if tool_names else NO_TOOL
        self._user_turns = user_turns
        self._raw_request: dict[str, Any] = raw["request"]
        self._raw_response: dict[str, Any] = raw["response"]
        self._response_arguments = response_arguments
        self._history_arguments = history_arguments
        self._request: dict[str, Any] | None = None
        self._response: dict[str, Any] = {}
        self._response_message: dict[str, Any] = {}

    def _normalize(self) -> dict[str, Any]:
        request = self._request
        if request is not None:
            return request
        raw_request = self._raw_request
        request = dict(raw_request)
        if self._history_arguments:
            messages = list(raw_request["messages"])
            for index, arguments in self._history_arguments:
                message = dict(messages[index])
                message["tool_calls"] = _with_arguments(message["tool_calls"], arguments)
                message["content"] = message.get("content")
                messages[index] = message
            request["messages"] = messages
        response = dict(self._raw_response)
        first = response["choices"][0]
        response["choices"] = [first]
        answer = dict(first["message"])
        answer["role"] = "assistant"
        if self.tool_names:
            answer["tool_calls"] = _with_arguments(answer["tool_calls"], self._response_arguments)
            answer["content"] = answer.get("content") or None
        else:
            answer.pop("tool_calls", None)
        self._response = response
        self._response_message = answer
        self._request = request
        return request

    @property
    def request(self) -> dict[str, Any]:
        """The request in normal form: ``messages`` (parsed history arguments), ``tools``, other keys."""
        return self._normalize()

    @property
    def response(self) -> dict[str, Any]:
        """The response with only its first choice (whose message is :attr:`response_message`)."""
        self._normalize()
        return self._response

    @property
    def response_message(self) -> dict[str, Any]:
        """The normalized assistant message of the first choice (parsed arguments; content None if absent)."""
        self._normalize()
        return self._response_message

    @property
    def user_text(self) -> str:
        """The user turns, in order, joined with a newline (ICL examples, embeddings)."""
        return "\n".join(self._user_turns)

    @property
    def prompt_hash(self) -> str:
        """Hex digest of the normalized user turns: the dedup and leakage key, stable across runs."""
        return self.digest.hex()

    def compact(self) -> None:
        """Release what a long-lived record does not need (call when keeping it, e.g. in a sample).

        The request's tool list is replaced by an equal list shared with other records (the
        schemas are most of a record's size, and every request of a client repeats them),
        and ``raw`` keeps only the top-level fields. The normal form is still built lazily:
        a sampled record is often evicted again before anything reads it.
        """
        request = self._request if self._request is not None else self._raw_request
        tools = request.get("tools")
        if isinstance(tools, list) and tools:
            shared = shared_tool_list(tools)
            if shared is not tools:
                request = dict(request)
                request["tools"] = shared
                if self._request is not None:
                    self._request = request
                else:
                    self._raw_request = request
        raw = self.raw
        if raw.get("request") is not None or raw.get("response") is not None:
            slim = dict(raw)
            slim["request"] = None
            slim["response"] = None
            self.raw = slim

    @property
    def has_tool_calls(self) -> bool:
        """Whether the response calls at least one tool."""
        return bool(self.tool_names)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request messages (normal form)."""
        return self.request["messages"]

    @property
    def tools(self) -> list[dict[str, Any]] | None:
        """The request's tool schemas, or ``None`` when it offered none."""
        return self.request.get("tools") or None

    def to_openai_record(self) -> dict[str, Any]:
        """The full log record in OpenAI format (tool-call ``arguments`` as JSON strings).

        This is a line of the eval and ICL files the evaluator reads.
        """
        record = dict(self.raw)
        request = dict(self.request)
        request["messages"] = [_openai_message(message) for message in request["messages"]]
        response = dict(self.response)
        choice = dict(response["choices"][0])
        choice["message"] = _openai_message(self.response_message)
        response["choices"] = [choice]
        record["request"] = request
        record["response"] = response
        return record

    def to_training_row(self, parse_function_arguments: bool = True) -> dict[str, Any]:
        """A line of the train/val files: ``{"messages": request + [answer], "tools": ...}``.

        Args:
            parse_function_arguments: Keep tool-call arguments as JSON objects (what NeMo
                Customizer expects for tool calling); ``False`` writes OpenAI JSON strings.

        Returns:
            The row; ``tools`` is present only when the request offered tools.
        """
        convert = _training_message if parse_function_arguments else _openai_message
        messages = [convert(message) for message in self.request["messages"]]
        messages.append(convert(self.response_message))
        for message in messages:
            if message.get("content") is None:
                # Chat templates concatenate strings: an empty string is the safe spelling of "no text".
                message["content"] = ""
        row: dict[str, Any] = {"messages": messages}
        tools = self.request.get("tools")
        if tools:
            row["tools"] = tools
        return row

    def __repr__(self) -> str:
        return f"LogRecord(label={self.label!r}, prompt_hash={self.prompt_hash[:12]}...)"


def _training_message(message: dict[str, Any]) -> dict[str, Any]:
    # Internal form already has parsed arguments; deep-copy them so a row never aliases the record.
    copied = dict(message)
    calls = copied.get("tool_calls")
    if calls:
        copied["tool_calls"] = [
            {**call, "function": {**call["function"], "arguments": _copy_json(call["function"]["arguments"])}}
            for call in calls
        ]
    return copied


def _copy_json(value: Any) -> Any:
    """A deep copy of parsed JSON (dicts, lists, scalars): several times faster than copy.deepcopy."""
    kind = type(value)
    if kind is dict:
        return {key: _copy_json(item) for key, item in value.items()}
    if kind is list:
        return [_copy_json(item) for item in value]
    return value


def _openai_message(message: dict[str, Any]) -> dict[str, Any]:
    calls = message.get("tool_calls")
    if not calls:
        return dict(message)
    copied = dict(message)
    copied["tool_calls"] = [
        {**call, "function": {**call["function"], "arguments": stringify_arguments(call["function"]["arguments"])}}
        for call in calls
    ]
    return copied


def stringify_arguments(arguments: Any) -> str:
    """Tool-call arguments as the JSON string OpenAI's format requires (strings pass through)."""
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments, ensure_ascii=False)


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments as a JSON object, from a JSON string or an already-parsed object.

    An empty or blank string means "no arguments" (some models emit it for functions
    without parameters).

    Raises:
        ValueError: not JSON, or JSON that is not an object.
    """
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str):
        if not arguments or arguments.isspace():
            return {}
        try:
            parsed = _loads(arguments)
        except ValueError as exc:
            raise ValueError(f"arguments are not valid JSON ({exc.msg} at char {exc.pos})") from None
        if isinstance(parsed, dict):
            return parsed
        raise ValueError(f"arguments are JSON {type(parsed).__name__}, not an object")
    if arguments is None:
        return {}
    raise ValueError(f"arguments are a {type(arguments).__name__}, expected a JSON string or object")


def content_text(content: Any) -> str:
    """The text of a message ``content``: a string, or the text parts of a content-part list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text") or "" for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def normalize_user_turns(turns: Iterable[str]) -> str:
    """The dedup form of user turns: whitespace collapsed, case folded, turns joined by newline."""
    if type(turns) is list and len(turns) == 1:
        return " ".join(turns[0].split()).casefold()  # the common case, without a generator
    return "\n".join(" ".join(turn.split()).casefold() for turn in turns)


def prompt_digest(turns: Iterable[str]) -> bytes:
    """A stable 16-byte digest of the normalized user turns (same across runs and machines)."""
    return hashlib.blake2b(normalize_user_turns(turns).encode("utf-8"), digest_size=16).digest()


def _check_tool_calls(
    calls: Any, where: str, known_tools: set[str] | None
) -> tuple[tuple[str, ...], list[dict[str, Any]]]:
    """Check tool calls; return their function names and parsed arguments.

    ``known_tools`` None: the names are not checked against the request's tools.
    """
    if not isinstance(calls, list):
        raise RecordRejected(
            DropReason.INVALID_TOOL_CALL, f"{where}.tool_calls is a {type(calls).__name__}, not a list"
        )
    names = []
    parsed = []
    for index, call in enumerate(calls):
        if not isinstance(call, dict):
            raise RecordRejected(DropReason.INVALID_TOOL_CALL, f"{where}.tool_calls[{index}] is not an object")
        kind = call.get("type", "function")
        if kind != "function":
            raise RecordRejected(
                DropReason.TOOL_CALL_NOT_FUNCTION, f"{where}.tool_calls[{index}].type is {kind!r}, not 'function'"
            )
        function = call.get("function")
        if not isinstance(function, dict):
            raise RecordRejected(DropReason.INVALID_TOOL_CALL, f"{where}.tool_calls[{index}] has no function object")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise RecordRejected(DropReason.INVALID_TOOL_CALL, f"{where}.tool_calls[{index}].function has no name")
        try:
            arguments = parse_arguments(function.get("arguments"))
        except ValueError as exc:
            raise RecordRejected(
                DropReason.UNPARSEABLE_ARGUMENTS, f"{where}.tool_calls[{index}] ({name}): {exc}"
            ) from None
        if known_tools is not None and name not in known_tools:
            raise RecordRejected(
                DropReason.UNKNOWN_TOOL,
                f"{where}.tool_calls[{index}] calls {name!r}, which is not among the request's tools "
                f"{sorted(known_tools)}",
            )
        names.append(name)
        parsed.append(arguments)
    return tuple(names), parsed


def _with_arguments(calls: list[dict[str, Any]], arguments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Checked tool calls rebuilt in normal form: ``type`` function, parsed ``arguments``."""
    normalized = []
    for call, parsed in zip(calls, arguments):
        function = dict(call["function"])
        function["arguments"] = parsed
        fixed = dict(call)
        fixed["type"] = "function"
        fixed["function"] = function
        normalized.append(fixed)
    return normalized


class _ToolListCache:
    """The few tool lists seen most recently.

    An application sends the same tool list with every request, so most records repeat one
    of a handful of lists. Sharing one list object between the records kept in a sample
    saves a copy of the schemas per record: memory, and garbage-collector work.
    """

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._lists: list[list[Any]] = []

    def share(self, tools: list[Any]) -> list[Any]:
        for known in self._lists:
            if known is tools or (len(known) == len(tools) and known == tools):
                return known
        self._lists.insert(0, tools)
        del self._lists[self._size :]
        return tools


_TOOL_LISTS = _ToolListCache()


def shared_tool_list(tools: list[Any]) -> list[Any]:
    """An equal tool list seen before (shared), or ``tools`` itself, remembered for next time.

    Callers must treat tool lists as read-only (nothing in this package modifies them).
    """
    return _TOOL_LISTS.share(tools)


def _tool_names(tools: Any) -> set[str] | None:
    """Validate the request's tool schemas; return their function names (None when no tools)."""
    if tools is None:
        return None
    if type(tools) is not list:
        if not isinstance(tools, list):
            raise RecordRejected(DropReason.INVALID_TOOLS, f"request.tools is a {type(tools).__name__}, not a list")
    if not tools:
        return None
    # The fast path runs for every record (exact type checks, no error formatting); anything
    # unusual goes to the explaining path below.
    names = set()
    add = names.add
    for tool in tools:
        if type(tool) is not dict:
            return _explain_tools(tools)
        function = tool.get("function")
        if type(function) is not dict or tool.get("type", "function") != "function":
            return _explain_tools(tools)
        name = function.get("name")
        if type(name) is not str or not name:
            return _explain_tools(tools)
        parameters = function.get("parameters")
        if parameters is not None and type(parameters) is not dict:
            return _explain_tools(tools)
        add(name)
    return names


def _explain_tools(tools: list[Any]) -> set[str]:
    """Validate tool schemas with ``isinstance`` (subclasses pass) and raise with the first problem."""
    names = set()
    for index, tool in enumerate(tools):
        if not isinstance(tool, dict):
            raise RecordRejected(DropReason.INVALID_TOOLS, f"request.tools[{index}] is not an object")
        if tool.get("type", "function") != "function":
            raise RecordRejected(
                DropReason.INVALID_TOOLS, f"request.tools[{index}].type is {tool.get('type')!r}, not 'function'"
            )
        function = tool.get("function")
        if not isinstance(function, dict):
            raise RecordRejected(DropReason.INVALID_TOOLS, f"request.tools[{index}] has no function object")
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise RecordRejected(DropReason.INVALID_TOOLS, f"request.tools[{index}].function has no name")
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise RecordRejected(
                DropReason.INVALID_TOOLS, f"request.tools[{index}] ({name}).parameters is not a JSON schema object"
            )
        names.add(name)
    return names


def parse_record(raw: Any) -> LogRecord:
    """Validate and normalize one raw log record.

    Checks (DESIGN section 4, steps 1 and 3): ``request.messages`` is a non-empty list of
    messages with a known ``role`` and a string (or content-part list) ``content`` (an
    assistant message with ``tool_calls`` may have it null or absent), with at least one
    user turn; ``request.tools``, when present, are sane function schemas;
    ``response.choices`` is a non-empty list whose entries carry a ``message``; the first
    choice's message has text or tool calls; every tool call is of ``type`` ``function``,
    names a function offered by the request (when the request lists tools), and has
    arguments that parse to a JSON object. Whether a record *must* have tool calls depends
    on the workload type, decided over all records: the caller checks that.

    Args:
        raw: One record as a log source yields it.

    Returns:
        The normalized record.

    Raises:
        RecordRejected: the first check that failed, with its reason code and detail.
    """
    if not isinstance(raw, dict):
        raise RecordRejected(DropReason.NOT_AN_OBJECT, f"the record is a {type(raw).__name__}, not a JSON object")
    request = raw.get("request")
    if not isinstance(request, dict):
        raise RecordRejected(DropReason.MISSING_REQUEST, "the record has no request object")
    messages = request.get("messages")
    if not isinstance(messages, list):
        raise RecordRejected(DropReason.MISSING_MESSAGES, "request.messages is missing or not a list")
    if not messages:
        raise RecordRejected(DropReason.EMPTY_MESSAGES, "request.messages is empty")
    known_tools = _tool_names(request.get("tools"))

    user_turns: list[str] = []
    history_arguments: list[tuple[int, list[dict[str, Any]]]] | None = None
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RecordRejected(DropReason.INVALID_MESSAGE, f"request.messages[{index}] is not an object")
        role = message.get("role")
        if role not in _ROLES:
            raise RecordRejected(DropReason.INVALID_MESSAGE, f"request.messages[{index}].role is {role!r}")
        content = message.get("content")
        if role == "user":
            if isinstance(content, str):
                user_turns.append(content)
                continue
            if isinstance(content, list):
                user_turns.append(content_text(content))
                continue
        calls = message.get("tool_calls")
        if content is None:
            if role != "assistant" or not calls:
                raise RecordRejected(DropReason.INVALID_MESSAGE, f"request.messages[{index}] ({role}) has no content")
        elif not isinstance(content, (str, list)):
            raise RecordRejected(
                DropReason.INVALID_MESSAGE,
                f"request.messages[{index}].content is a {type(content).__name__}, not a string or list of parts",
            )
        if calls is not None and role == "assistant":
            # Earlier turns of a multi-turn conversation: same argument normal form.
            _, parsed = _check_tool_calls(calls, f"request.messages[{index}]", None)
            if history_arguments is None:
                history_arguments = []
            history_arguments.append((index, parsed))
    if not user_turns:
        raise RecordRejected(DropReason.NO_USER_MESSAGE, "request.messages has no user turn")

    response = raw.get("response")
    if not isinstance(response, dict):
        raise RecordRejected(DropReason.MISSING_RESPONSE, "the record has no response object")
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        raise RecordRejected(DropReason.MISSING_CHOICES, "response.choices is missing, empty or not a list")
    for index, choice in enumerate(choices):
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise RecordRejected(
                DropReason.MISSING_RESPONSE_MESSAGE, f"response.choices[{index}] has no message object"
            )
    message = choices[0]["message"]
    role = message.get("role", "assistant")
    if role != "assistant":
        raise RecordRejected(
            DropReason.INVALID_RESPONSE_MESSAGE, f"response.choices[0].message.role is {role!r}, not 'assistant'"
        )
    content = message.get("content")
    if content is not None and not isinstance(content, (str, list)):
        raise RecordRejected(
            DropReason.INVALID_RESPONSE_MESSAGE,
            f"response.choices[0].message.content is a {type(content).__name__}, not a string",
        )
    calls = message.get("tool_calls")
    if calls:
        tool_names, arguments = _check_tool_calls(calls, "response.choices[0].message", known_tools)
    else:
        if calls is not None and not isinstance(calls, list):
            _check_tool_calls(calls, "response.choices[0].message", known_tools)  # raises
        text = content if isinstance(content, str) else content_text(content)
        if not text or text.isspace():
            raise RecordRejected(
                DropReason.EMPTY_RESPONSE, "response.choices[0].message has neither text nor tool calls"
            )
        tool_names, arguments = (), []
    return LogRecord(raw, prompt_digest(user_turns), user_turns, tool_names, arguments, history_arguments)


def detect_workload_type(records: Iterable[LogRecord]) -> WorkloadType:
    """``tool_calling`` if any record's response calls a tool, else ``generic`` (DESIGN step 2)."""
    for record in records:
        if record.tool_names:
            return WorkloadType.TOOL_CALLING
    return WorkloadType.GENERIC


def require_tool_calls(record: LogRecord) -> None:
    """Tool-calling quality (DESIGN step 3): in a tool-calling workload every response calls a tool.

    Raises:
        RecordRejected: with ``no_tool_calls`` when the response only has text.
    """
    if not record.tool_names:
        raise RecordRejected(
            DropReason.NO_TOOL_CALLS, "the workload is tool calling but this response calls no tool"
        )
