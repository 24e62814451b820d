"""Helpers for Odoo gateway plugins written in Python: the counterpart of the Rust SDK.

A plugin's logic is two plain functions, tested on any Python 3.10+ without WebAssembly:

    def handle(event: Event, config: Config) -> list[Delivery]: ...   # or raise Reject / Retry
    def validate_config(config: Config) -> None: ...                  # or raise InvalidConfig

and the component's entry module (`app.py`, built by componentize-py) exports them:

    import odoo_gateway
    import logic
    WitWorld = odoo_gateway.export(logic.handle, logic.validate_config)

Everything here but `export` and the log's destination is plain Python: nothing in this module
reaches the gateway except through the two WIT imports (`config`, `log`) inside `export`.
"""

import gc
import json
import re
import sys

__all__ = [
    "CONTENT_TYPE_JSON", "CONTENT_TYPE_XML", "Config", "ConfigError", "Delivery", "Event",
    "InvalidConfig", "Many2one", "PluginError", "Record", "Reject", "Retry", "X2many", "debug",
    "error", "export", "info", "is_set", "to_json", "trace", "warn",
]

CONTENT_TYPE_JSON = "application/json"
CONTENT_TYPE_XML = "application/xml"


class PluginError(Exception):
    """Why a plugin made no deliveries; one of the three kinds below."""


class Reject(PluginError):
    """The event is wrong for this subscription: dead-lettered with this reason, not retried."""


class Retry(PluginError):
    """A transient condition: the gateway calls the plugin again later."""


class InvalidConfig(PluginError):
    """The subscription's configuration cannot work; the message names the key."""


class ConfigError(InvalidConfig):
    """A configuration value that is missing or cannot be used, worded as the Rust SDK words it."""

    @classmethod
    def missing(cls, key):
        return cls(f"config key `{key}` is required but not set")

    @classmethod
    def invalid(cls, key, value, reason):
        return cls(f"config key `{key}`: invalid value {rust_debug(value)}: {reason}")


def rust_debug(text):
    """`text` quoted as Rust's `{:?}` quotes it, so messages read the same in every language."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\n\r\t\0":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}[ch])
        elif code < 0x20 or code == 0x7F:
            out.append("\\u{%x}" % code)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


class Config:
    """The subscription's `config` table: string keys to string values, read-only."""

    def __init__(self, pairs=()):
        items = pairs.items() if isinstance(pairs, dict) else pairs
        self._entries = dict(sorted(dict(items).items(), key=lambda kv: kv[0].encode()))

    def get(self, key, default=None):
        """The raw value of `key`, or `default` when it is not set."""
        return self._entries.get(key, default)

    def required(self, key):
        """The value of `key`; `ConfigError` when it is unset or blank."""
        value = self._entries.get(key)
        if value is None or not value.strip():
            raise ConfigError.missing(key)
        return value

    def number(self, key, default=None):
        """`key` as a float (spaces ignored), `default` when unset."""
        return self._parse(key, default, float, "invalid float literal")

    def integer(self, key, default=None):
        """`key` as an int (spaces ignored), `default` when unset."""
        return self._parse(key, default, int, "invalid digit found in string")

    def boolean(self, key, default=None):
        """`key` as `true` or `false`, `default` when unset."""
        def parse(text):
            if text not in ("true", "false"):
                raise ValueError
            return text == "true"
        return self._parse(key, default, parse, "provided string was not `true` or `false`")

    def list(self, key, default=None):
        """`key` split on commas, items trimmed, empty items dropped; `default` is itself a
        comma list used when the key is unset."""
        value = self._entries.get(key, default)
        return [] if value is None else [item.strip() for item in value.split(",") if item.strip()]

    def with_prefix(self, prefix):
        """(rest of the key, value) for every key starting with `prefix`, sorted by key."""
        return [(k[len(prefix):], v) for k, v in self._entries.items() if k.startswith(prefix)]

    def entries(self):
        """Every (key, value) pair, sorted by key."""
        return list(self._entries.items())

    def _parse(self, key, default, parse, reason):
        value = self._entries.get(key)
        if value is None:
            return default
        try:
            return parse(value.strip())
        except ValueError:
            raise ConfigError.invalid(key, value, reason) from None

    def __contains__(self, key):
        return key in self._entries

    def __len__(self):
        return len(self._entries)

    def __repr__(self):
        return f"Config({self._entries!r})"


class Event:
    """One business event, as the gateway passes it to `handle`."""

    __slots__ = ("id", "source", "model", "action", "record_id", "received_at_ms", "payload",
                 "headers", "_parsed")

    def __init__(self, model, action, payload, *, id="test-event", source="test", record_id=None,
                 received_at_ms=0, headers=()):
        self.id, self.source, self.model, self.action = id, source, model, action
        self.record_id, self.received_at_ms = record_id, received_at_ms
        self.payload, self.headers = payload, list(headers)
        self._parsed = None

    @classmethod
    def new(cls, model, action, payload, **fields):
        """An event for tests (id `test-event`, source `test`, time 0 unless given)."""
        if not isinstance(payload, str):
            payload = json.dumps(payload)
        return cls(model, action, payload, **fields)

    @property
    def event_type(self):
        """`<model>.<action>`, as subscriptions match it."""
        return f"{self.model}.{self.action}"

    def payload_json(self):
        """The payload parsed (once) as JSON; `Reject` when it is not JSON."""
        if self._parsed is None:
            try:
                self._parsed = (json.loads(self.payload),)
            except ValueError as e:
                raise Reject(f"payload is not valid JSON: {e}") from None
        return self._parsed[0]

    def record(self):
        """The payload as a `Record`; `Reject` when it is not a JSON object."""
        return Record.of(self.payload_json())


def is_set(value):
    """Whether an Odoo value is set: `false` and `null` mean "no value"."""
    return value is not False and value is not None


def _int(value):
    """An integer within i64 (never a bool), or None."""
    return value if type(value) is int and -(2**63) <= value < 2**63 else None


class Many2one(tuple):
    """A many2one value: `id`, and `name` when the payload carries it (else None)."""

    __slots__ = ()

    def __new__(cls, id, name=None):
        return tuple.__new__(cls, (id, name))

    id = property(lambda self: self[0])
    name = property(lambda self: self[1])

    @classmethod
    def of(cls, value):
        """Reads `[id, "name"]`, `[id]` or a bare id; None for `false`, `null` or another shape."""
        if _int(value) is not None:
            return cls(value)
        if not isinstance(value, list) or not value or _int(value[0]) is None:
            return None
        if len(value) == 1:
            return cls(value[0])
        if len(value) == 2 and (isinstance(value[1], str) or not is_set(value[1])):
            return cls(value[0], value[1] if isinstance(value[1], str) else None)
        return None

    def __repr__(self):
        return f"Many2one(id={self[0]!r}, name={self[1]!r})"


class X2many:
    """An x2many value: a list of ids, or of embedded records (`records` is None for ids)."""

    __slots__ = ("_ids", "records")

    def __init__(self, ids=None, records=None):
        self._ids, self.records = ids, records

    @classmethod
    def of(cls, value):
        """Reads a list of ids or of objects; None for `false`, mixed lists and anything else."""
        if not isinstance(value, list):
            return None
        if all(_int(item) is not None for item in value):
            return cls(ids=list(value))
        if all(isinstance(item, dict) for item in value):
            return cls(records=[Record(item) for item in value])
        return None

    def ids(self):
        """The ids, whichever form the list has (records without an integer `id` skipped)."""
        if self.records is None:
            return list(self._ids)
        return [r.id() for r in self.records if r.id() is not None]

    def __len__(self):
        return len(self._ids if self.records is None else self.records)


class Record:
    """An Odoo record (a JSON object) with readers that apply Odoo's conventions; readers never
    fail: an absent, unset or oddly shaped field reads as None."""

    __slots__ = ("fields",)

    def __init__(self, fields):
        self.fields = fields

    @classmethod
    def of(cls, value):
        """A record of `value`; `Reject` when it is not a JSON object."""
        if not isinstance(value, dict):
            raise Reject("payload is not a JSON object")
        return cls(value)

    def get(self, name):
        """The value of `name`; None when absent, `false` or `null`."""
        value = self.fields.get(name)
        return value if is_set(value) else None

    def str(self, name):
        value = self.fields.get(name)
        return value if isinstance(value, str) else None

    def float(self, name):
        value = self.fields.get(name)
        return float(value) if type(value) in (int, float) else None

    def int(self, name):
        return _int(self.fields.get(name))

    def bool(self, name):
        """True only when the payload says `true`."""
        return self.fields.get(name) is True

    def id(self):
        return self.int("id")

    def many2one(self, name):
        return Many2one.of(self.get(name))

    def x2many(self, name):
        return X2many.of(self.get(name))


# A float written in exponent form by Python (`1e-05`, `1e+16`): the one case where Python's
# JSON text differs from the Rust SDK's (serde_json writes `0.00001` and `1e16`).
_EXPONENT = re.compile(r"[0-9]e[+-][0-9]")


def to_json(value):
    """Compact JSON with keys sorted, as the Rust SDK writes it: the same bytes in every
    language. json's C encoder does the work; a float that Python would write with an exponent
    sends the value through the exact (slower) writer."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True,
                      allow_nan=False)
    if _EXPONENT.search(text) is None:
        return text
    out = []
    _write(value, out)
    return "".join(out)


def _write(value, out):
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value, key=str.encode)):
            out.append("," if i else "")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            out.append("," if i else "")
            _write(item, out)
        out.append("]")
    elif isinstance(value, float):
        out.append(_float_text(value))
    else:
        out.append(json.dumps(value, ensure_ascii=False))


def _float_text(value):
    """A float as serde_json writes it: shortest digits, positional from 1e-5 up to 1e16,
    else `<digits>e<exponent>` (no `+`, no leading zeros)."""
    mantissa, _, exponent = repr(value).partition("e")
    negative = mantissa.startswith("-")
    whole, _, fraction = mantissa.lstrip("-").partition(".")
    significant = (whole + fraction).lstrip("0")
    # The decimal point sits `point` digits after the first significant one.
    point = len(whole) - (len(whole + fraction) - len(significant)) + int(exponent or 0)
    digits = significant.rstrip("0")
    if not digits:
        text = "0.0"
    elif 0 < point <= 16:
        text = digits[:point] + "0" * (point - len(digits)) + "." + (digits[point:] or "0")
    elif -5 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        text = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + f"e{point - 1}"
    return ("-" if negative else "") + text


class Delivery:
    """One POST for the gateway to sign and deliver; destination "" is the default one."""

    __slots__ = ("destination", "content_type", "body", "headers", "ordering_key")

    def __init__(self, destination, content_type, body, headers=(), ordering_key=None):
        self.destination, self.content_type = destination, content_type
        self.body = body.encode() if isinstance(body, str) else bytes(body)
        self.headers = list(headers)
        self.ordering_key = ordering_key

    @classmethod
    def json(cls, destination, value):
        """A JSON delivery of `value` (see `to_json`)."""
        return cls(destination, CONTENT_TYPE_JSON, to_json(value))

    @classmethod
    def xml(cls, destination, body):
        return cls(destination, CONTENT_TYPE_XML, body)

    def with_header(self, name, value):
        """Adds a request header (the gateway's own signature headers cannot be overridden)."""
        self.headers.append((name, value))
        return self

    def with_ordering_key(self, key):
        """For a subscription with `ordering`: the key this delivery is ordered by (deliveries
        with the same key are attempted one at a time, in their events' acceptance order),
        instead of the event's (None: the event's). At most 256 bytes. Needs plugin world 0.2.0
        (`wit/v0.2`)."""
        self.ordering_key = None if key is None else str(key)
        return self

    def __eq__(self, other):
        return isinstance(other, Delivery) and all(
            getattr(self, f) == getattr(other, f) for f in self.__slots__)

    def __repr__(self):
        key = "" if self.ordering_key is None else f", ordering_key={self.ordering_key!r}"
        return (f"Delivery({self.destination!r}, {self.content_type!r}, {self.body!r}, "
                f"{self.headers!r}{key})")


# The log: the gateway's `log` import inside a component (set by `export`), stderr elsewhere.
_log_sink = None
_LEVELS = ("trace", "debug", "info", "warn", "error")


def _log(level, message):
    if _log_sink is None:
        print(f"[{level}] {message}", file=sys.stderr)
    else:
        _log_sink(level, str(message))


def trace(message):
    _log("trace", message)


def debug(message):
    _log("debug", message)


def info(message):
    _log("info", message)


def warn(message):
    _log("warn", message)


def error(message):
    _log("error", message)


def export(handle, validate_config=None, warm_up=()):
    """The `WitWorld` class componentize-py exports: calls `handle(Event, Config)` and
    `validate_config(Config)` and turns `Reject`, `Retry` and `InvalidConfig` into the world's
    errors (any other exception traps the call, its traceback in the plugin log).

    `warm_up` is a list of (Event, Config) that `handle` runs on once, here, while the component
    is built: the interpreter's state after them (specialised bytecode, caches) is part of the
    snapshot every call starts from, the same for every call. Results are ignored."""
    global _log_sink
    import dataclasses
    from componentize_py_types import Err
    import wit_world
    from wit_world.imports import config as host_config, log as host_log, types

    # The world the component is built against: 0.2.0's delivery has an ordering key.
    keyed = "ordering_key" in {f.name for f in dataclasses.fields(types.Delivery)}

    levels = {name: getattr(host_log.Level, name.upper()) for name in _LEVELS}
    errors = ((Reject, types.PluginError_Reject), (Retry, types.PluginError_Retry),
              (InvalidConfig, types.PluginError_InvalidConfig))

    # No host call while the component is being built: the warm-up logs nowhere.
    _log_sink = lambda level, message: None  # noqa: E731
    for event, config in warm_up:
        try:
            handle(event, config)
        except PluginError:
            pass
    _log_sink = lambda level, message: host_log.log(levels[level], message)  # noqa: E731
    # Everything alive now is in the snapshot every call starts from: set it aside from the
    # garbage collector, so that a collection during a call looks at that call's objects only.
    gc.collect()
    gc.freeze()

    class WitWorld(wit_world.WitWorld):
        def handle(self, wit_event):
            event = Event(wit_event.model, wit_event.action, wit_event.payload, id=wit_event.id,
                          source=wit_event.source, record_id=wit_event.record_id,
                          received_at_ms=wit_event.received_at_ms, headers=wit_event.headers)
            try:
                deliveries = handle(event, Config(host_config.entries()))
            except PluginError as e:
                for kind, wit_error in errors:
                    if isinstance(e, kind):
                        raise Err(wit_error(str(e))) from None
                raise
            if keyed:
                return [types.Delivery(d.destination, d.content_type, d.body, d.headers,
                                       d.ordering_key) for d in deliveries]
            if any(d.ordering_key is not None for d in deliveries):
                raise ValueError("a delivery's ordering key needs plugin world 0.2.0: "
                                 "build against wit/v0.2")
            return [types.Delivery(d.destination, d.content_type, d.body, d.headers)
                    for d in deliveries]

        def validate_config(self):
            if validate_config is not None:
                try:
                    validate_config(Config(host_config.entries()))
                except InvalidConfig as e:
                    raise Err(str(e)) from None

    return WitWorld
