"""Messages for a bad configuration: each names the key, what is expected, and an example.

Shared by ``config.yaml`` (:mod:`log_capturer.config.loader`) and the pipelines file
(:mod:`log_capturer.processing.pipelines`). pydantic's own messages name Python classes
("a valid dictionary or instance of PartitioningConfig") and give no fix; these say
"expected a mapping, such as `partitioning: {enabled: true, strategy: hash}`", built from
the schema itself (the field's default, else the shape of its type), so they never go stale.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from log_capturer.config.secrets import is_secret_key

Loc = tuple[int | str, ...]

#: pydantic error types about the shape of a value: rewritten as "expected ..., such as ...".
TYPE_ERRORS = frozenset(
    {
        "model_type",
        "model_attributes_type",
        "dict_type",
        "list_type",
        "tuple_type",
        "set_type",
        "int_type",
        "int_parsing",
        "int_from_float",
        "float_type",
        "float_parsing",
        "bool_type",
        "bool_parsing",
        "string_type",
        "literal_error",
        "is_instance_of",
        "string_pattern_mismatch",
    }
)
PLACEHOLDER = "..."
_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
#: Words YAML reads as something other than text: quoted in examples.
_YAML_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n"})


def decode_utf8(data: bytes) -> str:
    """``data`` as text, or a ValueError naming the first byte that is not UTF-8 and where it is."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(
            f"not UTF-8: byte 0x{data[exc.start]:02x} at byte offset {exc.start} (line {line}); "
            "save the file as UTF-8"
        ) from None


def key_of(parts: Iterable[int | str]) -> str:
    """``sinks.kafka.brokers[0]``: names joined with dots, list indexes in brackets."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


class Place:
    """Where an error points in the schema: the key as the user writes it, and its type."""

    def __init__(self, root: type[BaseModel], loc: Loc) -> None:
        #: loc without what pydantic adds for unions (a member's name, a discriminator's tag).
        self.parts: list[int | str] = []
        #: The type expected there (``None`` when the key is not in the schema).
        self.annotation: Any = root
        self.field: FieldInfo | None = None
        #: The error is about the name of a key (a mapping's key), not its value.
        self.naming = False
        container: Any = None
        for part in loc:
            ann = _unwrap(self.annotation)
            if part == "[key]" and get_origin(container) is dict:
                self.naming = True
                self.annotation = get_args(container)[0]
                continue
            container = ann
            members = _members(ann)
            if members and isinstance(part, str):
                # A union member's name or a tag: the user wrote no such key.
                self.annotation = next((m for m in members if _tagged(m, part)), ann)
                continue
            self.parts.append(part)
            self.field = None
            origin = get_origin(ann)
            if _is_model(ann) and isinstance(part, str) and part in ann.model_fields:
                self.field = ann.model_fields[part]
                self.annotation = self.field.annotation
            elif origin is list and isinstance(part, int):
                self.annotation = get_args(ann)[0]
            elif origin is dict:
                self.parts[-1] = str(part)  # a mapping's key, even one YAML read as a number
                self.annotation = get_args(ann)[1]
            else:
                self.annotation = None

    @property
    def key(self) -> str:
        return key_of(self.parts)

    def allowed(self) -> list[str]:
        """The keys a mapping here may have (empty unless it is a section of the schema)."""
        ann = _unwrap(self.annotation)
        return list(ann.model_fields) if _is_model(ann) else []

    def snippet(self, value: Any) -> str:
        """``value`` as the user would write it here: ``name: value``, or the bare item of a list."""
        name = self.parts[-1] if self.parts else None
        shown = render(value)
        return f"{name}: {shown}" if isinstance(name, str) else shown


def describe(
    err: Mapping[str, Any], root: type[BaseModel], origins: Mapping[tuple[str, ...], str] | None = None
) -> str:
    """One pydantic error as 'key: what is wrong, what is expected, an example'.

    ``origins`` maps a key path to the environment variable that set it, so an error in an
    override is blamed on the variable, not the file.
    """
    place = Place(root, tuple(err["loc"]))
    key = place.key
    var = next((v for path, v in (origins or {}).items() if tuple(place.parts[: len(path)]) == path), "")
    if var:
        key += f" (from {var})"
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = Place(root, tuple(err["loc"])[:-1])
        allowed = parent.allowed()
        close = difflib.get_close_matches(str(place.parts[-1]), allowed, n=1)
        hint = f" Did you mean '{key_of([*parent.parts, close[0]])}'?" if close else ""
        listed = f" Allowed here: {', '.join(sorted(allowed))}" if allowed else ""
        return f"{key}: unknown key.{hint}{listed}"
    given = err.get("input")
    secret = any(is_secret_key(str(p)) for p in place.parts)
    hidden = secret or isinstance(given, dict | list) or given is None
    shown = "" if hidden else f" (got {given!r})"
    if place.naming:
        pattern = err.get("ctx", {}).get("pattern")
        rule = f"must match {pattern!r}" if pattern else f"must be {phrase(place.annotation) or 'valid'}"
        return f"{key}: the name {rule}{shown}"
    if kind == "missing":
        return f"{key}: missing; add it, such as `{place.snippet(example(place.annotation, place.field))}`"
    if kind in TYPE_ERRORS and place.annotation is not None:
        expected = phrase(place.annotation)
        value = example(place.annotation, place.field)
        if kind == "string_pattern_mismatch":
            expected = f"text matching {err.get('ctx', {}).get('pattern', '')!r}"
        elif expected == "text" and isinstance(given, int | float) and not secret:
            value = str(given).lower() if isinstance(given, bool) else str(given)  # quote it
        if expected:
            snippet = f"{var}={value}" if var and not isinstance(value, list | dict) else place.snippet(value)
            return f"{key}: expected {expected}, such as `{snippet}`{shown}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{key}: {msg}{shown}"


def describe_all(
    exc: ValidationError,
    root: type[BaseModel],
    origins: Mapping[tuple[str, ...], str] | None = None,
    skip: Iterable[Loc] = (),
) -> list[str]:
    """Every error of ``exc`` described once (a union reports one error per member), except
    those at or under a key in ``skip`` (already reported another way)."""
    skipped = [tuple(s) for s in skip]
    out: dict[str, None] = {}
    for err in exc.errors():
        loc = tuple(err["loc"])
        if any(loc[: len(s)] == s for s in skipped):
            continue
        out[describe(err, root, origins)] = None
    return list(out)


# -- the expected shape, in words and by example ------------------------------------------------


def phrase(annotation: Any) -> str:
    """What a value of this type looks like, in words ('' when there is nothing better to say)."""
    ann = _unwrap(annotation)
    members = _members(ann)
    if members:
        words = list(dict.fromkeys(phrase(m) for m in members))
        if "a number" in words and "an integer" in words:
            words.remove("an integer")
        words = ["true/false" if w == "true or false" else w for w in words]
        return ", ".join(words[:-1]) + " or " + words[-1] if len(words) > 1 else words[0]
    origin = get_origin(ann)
    if origin is Literal:
        return "one of " + _choices(get_args(ann))
    if origin in (list, tuple, set, frozenset):
        return "a list"
    if origin is dict or _is_model(ann):
        return "a mapping"
    simple = {bool: "true or false", int: "an integer", float: "a number", str: "text", SecretStr: "text"}
    return simple.get(ann, "")


def example(annotation: Any, field: FieldInfo | None = None, depth: int = 0) -> Any:
    """A valid value of this type: the field's default when it shows the shape, else a made-up one."""
    if field is not None and not field.is_required():
        default = field.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            return _model_example(type(default), depth)
        if default not in (None, "", [], {}) and not isinstance(default, SecretStr | bool):
            return default
    ann = _unwrap(annotation)
    members = _members(ann)
    if members:
        return example(members[0], None, depth)
    origin = get_origin(ann)
    if origin is Literal:
        return get_args(ann)[0]
    if origin in (list, tuple, set, frozenset):
        return [example(get_args(ann)[0], None, depth)]
    if origin is dict:
        return {"name": example(get_args(ann)[1], None, depth)}
    if _is_model(ann):
        return _model_example(ann, depth)
    made_up: dict[Any, Any] = {bool: True, int: 1, float: 1.0}
    return made_up.get(ann, PLACEHOLDER)


def _model_example(model: type[BaseModel], depth: int) -> dict[str, Any]:
    """Two keys of a section: its required ones first, then its first plain (non-section) ones."""
    if depth >= 3:
        return {}
    fields = list(model.model_fields.items())
    required = [(n, f) for n, f in fields if f.is_required()]
    plain = [(n, f) for n, f in fields if not f.is_required() and not _is_model(_unwrap(f.annotation))]
    chosen = (required + plain)[:2] or fields[:1]
    return {n: example(f.annotation, f, depth + 1) for n, f in chosen}


def render(value: Any) -> str:
    """``value`` in YAML flow style, as one would type it in the file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        plain = _PLAIN.match(value) and value.lower() not in _YAML_WORDS
        return value if plain else json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{render(k)}: {render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple | set | frozenset):
        return "[" + ", ".join(render(v) for v in value) + "]"
    return json.dumps(str(value))


def _choices(values: tuple[Any, ...]) -> str:
    shown = [repr(v) for v in values]
    return ", ".join(shown[:-1]) + " or " + shown[-1] if len(shown) > 1 else shown[0]


def _unwrap(annotation: Any) -> Any:
    """The type without Annotated metadata, and ``X`` for ``X | None``."""
    while True:
        origin = get_origin(annotation)
        if origin is typing.Annotated:
            annotation = get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) == 1:
                annotation = args[0]
                continue
        return annotation


def _members(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(a for a in get_args(annotation) if a is not type(None))
    return ()


def _tagged(member: Any, tag: str) -> bool:
    """True when ``member`` is the model a discriminated union picks with ``tag``."""
    member = _unwrap(member)
    if not _is_model(member):
        return False
    return any(
        get_origin(f.annotation) is Literal and get_args(f.annotation) == (tag,)
        for f in member.model_fields.values()
    )


def _is_model(annotation: Any) -> typing.TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
