"""A fast path for loading request bodies with a marshmallow schema.

Why: a profile of ``POST /api/snapshots`` put the largest share of a worker's time
in marshmallow's machinery (a schema load per window and document, error stores,
hooks), not in the checks themselves. :func:`compile_loader` turns a schema into
one closure per field from the schema's own declared fields: the same fields,
defaults, ``data_key``s and validators (the validator objects are called as they
are). It is a pure fast path: on anything it is not sure of (a wrong type, a
failed validator, a missing required key, an unknown key under ``RAISE``) it
answers :data:`MISS`, and the caller loads with marshmallow, which produces the
answer and the error messages. Schemas with hooks or unusual fields are not
compiled at all. ``tests/test_fastload.py`` proves with hypothesis that whatever
the fast path accepts, marshmallow accepts with the same result.

The schema stays the one source of truth: the OpenAPI document and this loader
both come from it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from typing import Any

import marshmallow
from marshmallow import EXCLUDE, RAISE, fields, missing

from schemas.common import MOMENT_PATTERN, Moment, StrictBoolean, StrictFloat, StrictInteger


class _Miss(Exception):
    """The fast path is not sure: marshmallow decides."""


MISS: Any = object()
Loader = Callable[[Any], Any]
_Leaf = Callable[[Any], Any]


def _validated(field: fields.Field[Any], convert: _Leaf) -> _Leaf:
    validators = list(field.validators)
    if not validators:
        return convert

    def leaf(value: Any) -> Any:
        out = convert(value)
        for validator in validators:
            try:
                if validator(out) is False:
                    raise _Miss
            except marshmallow.ValidationError:
                raise _Miss from None
        return out

    return leaf


def _string(value: Any) -> Any:
    if type(value) is not str:
        raise _Miss
    return value


def _float(value: Any) -> Any:
    if type(value) is float:
        if not math.isfinite(value):
            raise _Miss
        return value
    if type(value) is int:
        return float(value)
    raise _Miss


def _integer(value: Any) -> Any:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    raise _Miss


def _boolean(value: Any) -> Any:
    if value is True or value is False:
        return value
    raise _Miss


def _moment(field: Moment) -> _Leaf:
    # Moment's own steps (the pattern, then AwareDateTime's ISO parse and default
    # zone) without marshmallow's per-call machinery: a snapshot has one or two.
    pattern = re.compile(MOMENT_PATTERN)
    zone = field.default_timezone

    def leaf(value: Any) -> Any:
        if type(value) is not str or pattern.fullmatch(value) is None:
            raise _Miss
        moment = dt.datetime.fromisoformat(value)
        if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
            moment = moment.replace(tzinfo=zone)
        return moment

    return leaf


def _generic(field: fields.Field[Any], name: str) -> _Leaf:
    # Any other field: marshmallow's own code for it, without the schema around it.
    def leaf(value: Any) -> Any:
        try:
            return field.deserialize(value, name, None)
        except marshmallow.ValidationError:
            raise _Miss from None

    return leaf


def _convert(field: fields.Field[Any], name: str) -> _Leaf | None:
    kind = type(field)
    if kind is fields.String:
        return _validated(field, _string)
    if kind is StrictFloat and field.allow_nan is not True and not field.as_string:  # type: ignore[attr-defined]
        return _validated(field, _float)
    if kind is StrictInteger and not field.as_string:  # type: ignore[attr-defined]
        return _validated(field, _integer)
    if kind is StrictBoolean and not field._text:  # type: ignore[attr-defined]
        return _validated(field, _boolean)
    if (
        kind is Moment
        and field.default_timezone is not None  # type: ignore[attr-defined]
        and Moment.DESERIALIZATION_FUNCS.get(field.format or field.DEFAULT_FORMAT)  # type: ignore[attr-defined]
        == dt.datetime.fromisoformat
    ):
        return _validated(field, _moment(field))  # type: ignore[arg-type]
    if kind is fields.Nested:
        # A many=True field's schema instance has many=True: compiled per item here.
        inner = _compile(field.schema, item=True)  # type: ignore[attr-defined]
        if inner is None or field.only or field.exclude or field.unknown:  # type: ignore[attr-defined]
            return None
        item = inner
        if not field.many:  # type: ignore[attr-defined]
            return _validated(field, item)

        def nested_list(value: Any) -> Any:
            if type(value) is not list:
                raise _Miss
            return [item(entry) for entry in value]

        return _validated(field, nested_list)
    if kind is fields.Dict:
        keys, values = field.key_field, field.value_field  # type: ignore[attr-defined]
        key = _convert(keys, name) if keys is not None else (lambda k: k)
        val = _convert(values, name) if values is not None else (lambda v: v)
        if key is None or val is None:
            return None

        def mapping(value: Any) -> Any:
            if type(value) is not dict:
                raise _Miss
            return {key(k): val(v) for k, v in value.items()}

        return _validated(field, mapping)
    if isinstance(
        field, fields.String | fields.Number | fields.Boolean | fields.DateTime | fields.UUID
    ):
        return _generic(field, name)  # their deserialising reads only the value
    return None


def _slot(field: fields.Field[Any], name: str) -> tuple[str, str, Any, bool, bool, _Leaf] | None:
    if field.pre_load or field.post_load:
        return None
    convert = _convert(field, name)
    if convert is None:
        return None
    return (
        field.data_key or name,
        field.attribute or name,
        field.load_default,
        field.required,
        field.allow_none,
        convert,
    )


def _compile(schema: marshmallow.Schema, item: bool = False) -> Loader | None:
    if any(schema._hooks.values()) or schema.unknown not in (EXCLUDE, RAISE):
        return None
    if schema.partial:  # a partial load skips defaults too: marshmallow's job
        return None
    if schema.many and not item:
        return None
    slots = []
    for name, field in schema.load_fields.items():
        slot = _slot(field, name)
        if slot is None:
            return None
        slots.append(slot)
    strict = schema.unknown == RAISE
    known = {slot[0] for slot in slots}

    def load(data: Any) -> Any:
        if type(data) is not dict:
            raise _Miss
        if strict and not known.issuperset(data):
            raise _Miss
        out = {}
        for key, attribute, default, required, allow_none, convert in slots:
            value = data.get(key, missing)
            if value is missing:
                if required:
                    raise _Miss
                if default is not missing:
                    out[attribute] = default() if callable(default) else default
                continue
            if value is None:
                if not allow_none:
                    raise _Miss
                out[attribute] = None
                continue
            out[attribute] = convert(value)
        return out

    return load


def compile_loader(schema: marshmallow.Schema) -> Loader | None:
    """The fast path of ``schema.load`` for one item, or ``None`` if the schema
    uses what the fast path does not do (hooks, ``INCLUDE``, other containers).

    The loader returns :data:`MISS` where marshmallow must decide.
    """
    load = _compile(schema)
    if load is None:
        return None
    compiled = load

    def fast(data: Any) -> Any:
        try:
            return compiled(data)
        except Exception:  # _Miss, or a conversion's own error: marshmallow says
            return MISS

    return fast
