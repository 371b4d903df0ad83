"""The receiving half of redrive's webhooks, in one file of standard Python.

Verify the Standard Webhooks signature, decode the CloudEvent (binary mode,
structured mode or Pub/Sub's push envelope), run the handler at most once
per ``webhook-id`` by inserting a receipt in the handler's own sqlite3
transaction, and answer the status that makes redrive retry or stop::

    import sqlite3, redrive_receiver as rr

    verifier = rr.Verifier("whsec_...")
    conn = sqlite3.connect("orders.db", isolation_level=None)
    rr.create_table(conn)

    def record(conn, delivery):
        order = delivery.event.data_json()
        conn.execute("INSERT INTO orders (event_id, total) VALUES (?, ?)",
                     (delivery.event.id, order["total"]))
        return rr.Outcome.processed()

    outcome = rr.handle(verifier, conn, headers, body, record)
    # answer outcome.status, outcome.headers(), outcome.body()

It is the same as the Rust crate ``redrive-receiver``; both pass the test
vectors in ``crates/receiver/tests/vectors.json``. Python 3.9 or later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import sqlite3
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional, Union

__all__ = [
    "DEFAULT_TOLERANCE", "DEFAULT_RETENTION", "RECEIPTS_TABLE", "REJECT_STATUS",
    "Verifier", "ReceiveError", "VerificationError", "DecodeError",
    "CloudEvent", "Delivery", "Outcome",
    "sign", "decode", "receive", "create_table", "claim", "prune", "process", "handle",
]

log = logging.getLogger("redrive_receiver")

#: How far ``webhook-timestamp`` may be from the clock, either way (seconds).
DEFAULT_TOLERANCE = 5 * 60
#: How long receipts should be kept (seconds): 31 days, redrive's longest
#: message retention. A push whose receipt was pruned runs the handler again.
DEFAULT_RETENTION = 31 * 24 * 3600
RECEIPTS_TABLE = "redrive_receipts"
#: A rejection's status: final under redrive's ``adobe-io`` preset and under
#: any policy whose ``final_codes`` lists it.
REJECT_STATUS = 422

Headers = Union[Mapping[str, Union[str, bytes]], Iterable]


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

class ReceiveError(Exception):
    """A request refused before any handler ran. ``kind`` is a stable name,
    ``status`` the HTTP status to answer."""

    kind = "invalid"
    status = 400

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class VerificationError(ReceiveError):
    """Not proven to come from the sender, or a replay: answered 401.
    ``kind`` is ``missing_header``, ``invalid_header``, ``timestamp_too_old``,
    ``timestamp_too_new`` or ``no_matching_signature``."""

    status = 401


class DecodeError(ReceiveError):
    """Signed, but not a CloudEvent redrive could have sent: answered 400."""

    status = 400

    def __init__(self, field_name: str, message: str):
        super().__init__("invalid_event", f"{field_name}: {message}")
        self.field = field_name


# --------------------------------------------------------------------------
# Verify
# --------------------------------------------------------------------------

def _key(secret: str) -> bytes:
    encoded = secret[len("whsec_"):] if secret.startswith("whsec_") else secret
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"invalid webhook secret: not base64 after whsec_: {err}") from None
    if not key:
        raise ValueError("invalid webhook secret: the key is empty")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value a Standard Webhooks sender sends."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    mac = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class _Headers:
    """Header lookup without case, from a mapping or (name, value) pairs."""

    def __init__(self, headers: Headers):
        items = headers.items() if hasattr(headers, "items") else headers
        self._entries = []
        for name, value in items:
            if isinstance(value, str):
                value = value.encode("latin-1", errors="replace")
            self._entries.append((name.lower(), bytes(value)))

    def get(self, name: str) -> Optional[bytes]:
        name = name.lower()
        for n, v in self._entries:
            if n == name:
                return v
        return None

    def get_str(self, name: str) -> Optional[str]:
        value = self.get(name)
        if value is None:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def __iter__(self):
        return iter(self._entries)


class Verifier:
    """Checks Standard Webhooks signatures with one or more secrets
    (``whsec_`` + base64). A request passes when any ``v1,`` signature of its
    space-separated ``webhook-signature`` matches any secret."""

    def __init__(self, secrets: Union[str, Iterable[str]], tolerance: float = DEFAULT_TOLERANCE):
        if isinstance(secrets, str):
            secrets = [secrets]
        self._keys = [_key(s) for s in secrets]
        if not self._keys:
            raise ValueError("invalid webhook secret: no secret given")
        self.tolerance = tolerance

    def __repr__(self) -> str:  # never show key material
        return f"Verifier(secrets={len(self._keys)}, tolerance={self.tolerance})"

    def verify(self, headers: Headers, body: bytes, now: Optional[float] = None) -> tuple:
        """Returns ``(webhook_id, timestamp)`` or raises VerificationError."""
        h = headers if isinstance(headers, _Headers) else _Headers(headers)
        values = {}
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            raw = h.get(name)
            if raw is None:
                raise VerificationError("missing_header", f"the {name} header is missing")
            try:
                values[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise VerificationError("invalid_header", f"the {name} header is not text") from None
        webhook_id, stamp, signature = (values["webhook-id"], values["webhook-timestamp"],
                                        values["webhook-signature"])
        if not webhook_id:
            raise VerificationError("invalid_header", "the webhook-id header is empty")
        try:
            seconds = int(stamp.strip())
        except ValueError:
            raise VerificationError("invalid_header",
                                    f"the webhook-timestamp header {stamp!r} is not Unix seconds") from None
        now = int(time.time() if now is None else now)
        tolerance = int(self.tolerance)
        if now - seconds > tolerance:
            raise VerificationError("timestamp_too_old",
                                    f"webhook-timestamp {seconds} is {now - seconds}s old, "
                                    f"more than the {tolerance}s tolerated")
        if seconds - now > tolerance:
            raise VerificationError("timestamp_too_new",
                                    f"webhook-timestamp {seconds} is {seconds - now}s in the future, "
                                    f"more than the {tolerance}s tolerated")
        signed = f"{webhook_id}.{stamp}.".encode() + body
        expected = [hmac.new(key, signed, hashlib.sha256).digest() for key in self._keys]
        for entry in signature.split(" "):
            if not entry.startswith("v1,"):
                continue
            try:
                candidate = base64.b64decode(entry[3:], validate=True)
            except (binascii.Error, ValueError):
                continue
            # compare_digest takes the same time wherever the bytes differ.
            if any(hmac.compare_digest(candidate, mac) for mac in expected):
                return webhook_id, seconds
        raise VerificationError("no_matching_signature",
                                "no signature in webhook-signature matches the body with any known secret")


# --------------------------------------------------------------------------
# Decode
# --------------------------------------------------------------------------

@dataclass
class CloudEvent:
    id: str
    source: str
    type: str
    specversion: str
    subject: Optional[str] = None
    time: Optional[str] = None
    datacontenttype: Optional[str] = None
    dataschema: Optional[str] = None
    #: Extensions as strings, whatever format carried them.
    extensions: dict = field(default_factory=dict)
    #: The payload bytes; JSON data from structured mode is its compact text.
    data: Optional[bytes] = None

    def data_json(self):
        if self.data is None:
            raise DecodeError("data", "the event has no data")
        try:
            return json.loads(self.data)
        except ValueError as err:
            raise DecodeError("data", f"not the JSON expected: {err}") from None


@dataclass
class Delivery:
    #: The same on every attempt of the delivery: the idempotency key.
    webhook_id: str
    #: Unix seconds when this attempt was sent.
    timestamp: int
    #: 1 on the first attempt, when the sender says.
    attempt: Optional[int]
    #: ``cloudevents-binary``, ``cloudevents-structured`` or ``pubsub-push``.
    format: str
    event: CloudEvent


_OPTIONAL = ("subject", "time", "dataschema")


def _build(attributes: dict, content_type, data, prefix: str) -> CloudEvent:
    values = {}
    for name in ("id", "source", "type", "specversion"):
        value = attributes.pop(name, None)
        if not value:
            raise DecodeError(prefix + name, "is required")
        values[name] = value
    for name in _OPTIONAL:
        values[name] = attributes.pop(name, None)
    return CloudEvent(datacontenttype=content_type, extensions=attributes, data=data, **values)


def _is_json(content_type: Optional[str]) -> bool:
    if content_type is None:
        return True
    media = content_type.split(";")[0].strip().lower()
    return media.endswith("/json") or media.endswith("+json")


def _json_text(value) -> str:
    # The same compact text serde_json writes.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _decode_binary(h: _Headers, body: bytes) -> CloudEvent:
    attributes = {}
    for name, raw in h:
        if not name.startswith("ce-"):
            continue
        try:
            value = urllib.parse.unquote_to_bytes(raw.decode("latin-1")).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(name, "is not UTF-8 once percent-decoded") from None
        attributes.setdefault(name[3:], value)
    attributes.pop("datacontenttype", None)
    content_type = h.get_str("content-type")
    return _build(attributes, content_type.strip() if content_type is not None else None,
                  body or None, "ce-")


def _load_json(body: bytes):
    try:
        return json.loads(body)
    except ValueError as err:
        raise DecodeError("body", f"not JSON: {err}") from None


def _decode_structured(body: bytes) -> CloudEvent:
    obj = _load_json(body)
    if not isinstance(obj, dict):
        raise DecodeError("body", "a structured event is a JSON object")
    data = obj.pop("data", None)
    has_data = data is not None
    data_base64 = obj.pop("data_base64", None)
    attributes = {}
    for name, value in obj.items():
        if value is None:
            continue
        if isinstance(value, str):
            attributes[name] = value
        elif isinstance(value, (bool, int, float)):
            attributes[name] = _json_text(value)
        else:
            raise DecodeError(name, "an attribute is a string, number or boolean")
    content_type = attributes.pop("datacontenttype", None)
    if has_data and data_base64 is not None:
        raise DecodeError("data_base64", "an event has data or data_base64, not both")
    if data_base64 is not None:
        if not isinstance(data_base64, str):
            raise DecodeError("data_base64", "is a string")
        try:
            payload = base64.b64decode(data_base64, validate=True)
        except (binascii.Error, ValueError) as err:
            raise DecodeError("data_base64", f"not base64: {err}") from None
    elif not has_data:
        payload = None
    elif isinstance(data, str) and not _is_json(content_type):
        payload = data.encode("utf-8")
    else:
        payload = _json_text(data).encode("utf-8")
    return _build(attributes, content_type, payload, "")


def _decode_pubsub(body: bytes):
    envelope = _load_json(body)
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        raise DecodeError("message", "a Pub/Sub push envelope has a message object")
    attempt = envelope.get("deliveryAttempt")
    if attempt is not None and (isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 0):
        raise DecodeError("deliveryAttempt", "is a positive number")
    raw_attributes = message.get("attributes") or {}
    if not isinstance(raw_attributes, dict):
        raise DecodeError("message.attributes", "is an object")
    attributes = {}
    for name, value in sorted(raw_attributes.items()):
        if not isinstance(value, str):
            raise DecodeError(f"message.attributes.{name}", "is a string")
        attributes.setdefault(name[3:] if name.startswith("ce-") else name, value)
    if "id" not in attributes:
        message_id = message.get("messageId") or message.get("message_id")
        if isinstance(message_id, str):
            attributes["id"] = message_id
    content_type = attributes.pop("datacontenttype", None)
    data = message.get("data")
    if data is None:
        payload = None
    elif isinstance(data, str):
        try:
            payload = base64.b64decode(data, validate=True) or None
        except (binascii.Error, ValueError) as err:
            raise DecodeError("message.data", f"not base64: {err}") from None
    else:
        raise DecodeError("message.data", "is a base64 string")
    return _build(attributes, content_type, payload, "message.attributes.ce-"), attempt


def decode(headers: Headers, body: bytes):
    """``(format, event, attempt)`` from a request, whichever format it came in."""
    h = headers if isinstance(headers, _Headers) else _Headers(headers)
    attempt = None
    raw_attempt = h.get_str("redrive-attempt")
    if h.get("redrive-attempt") is not None:
        try:
            attempt = int((raw_attempt or "").strip())
        except ValueError:
            raise DecodeError("redrive-attempt", "is not a number") from None
    if h.get("ce-specversion") is not None:
        return "cloudevents-binary", _decode_binary(h, body), attempt
    content_type = h.get_str("content-type")
    media = content_type.split(";")[0].strip().lower() if content_type else None
    if media == "application/cloudevents+json":
        return "cloudevents-structured", _decode_structured(body), attempt
    if media == "application/json":
        event, envelope_attempt = _decode_pubsub(body)
        return "pubsub-push", event, attempt if attempt is not None else envelope_attempt
    raise DecodeError("content-type", "not a CloudEvent: no ce-specversion header, no "
                      "application/cloudevents+json body and no Pub/Sub push envelope")


def receive(verifier: Verifier, headers: Headers, body: bytes, now: Optional[float] = None) -> Delivery:
    """Verifies, then decodes: nothing unverified is parsed. Raises
    VerificationError (401) or DecodeError (400)."""
    h = _Headers(headers)
    webhook_id, timestamp = verifier.verify(h, body, now)
    fmt, event, attempt = decode(h, body)
    return Delivery(webhook_id, timestamp, attempt, fmt, event)


# --------------------------------------------------------------------------
# Outcome
# --------------------------------------------------------------------------

class Outcome:
    """How one request ended, and its HTTP answer.

    processed 200 · duplicate 200 · retry_later 503 (+ Retry-After) ·
    rejected 422 · invalid 401/400 · failed 500.
    """

    _STATUS = {"processed": 200, "duplicate": 200, "retry_later": 503,
               "rejected": REJECT_STATUS, "failed": 500}

    def __init__(self, name: str, *, after: Optional[float] = None, reason: Optional[str] = None,
                 error: Optional[ReceiveError] = None, message: Optional[str] = None):
        self.name, self.after, self.reason, self.error, self.message = name, after, reason, error, message

    @classmethod
    def processed(cls) -> "Outcome":
        return cls("processed")

    @classmethod
    def duplicate(cls) -> "Outcome":
        return cls("duplicate")

    @classmethod
    def retry_later(cls, after: Optional[float] = None) -> "Outcome":
        """Not now; no sooner than ``after`` seconds when given."""
        return cls("retry_later", after=after)

    @classmethod
    def reject(cls, reason: str) -> "Outcome":
        """Never: asking again will not help. Nothing is committed, so a
        manual redrive runs the handler again."""
        return cls("rejected", reason=reason)

    @classmethod
    def failed(cls, message: str) -> "Outcome":
        return cls("failed", message=message)

    @classmethod
    def invalid(cls, error: ReceiveError) -> "Outcome":
        return cls("invalid", error=error)

    @property
    def status(self) -> int:
        if self.name == "invalid":
            return self.error.status
        return self._STATUS[self.name]

    @property
    def retry_after(self) -> Optional[str]:
        """The Retry-After value: whole seconds, rounded up."""
        if self.name != "retry_later" or self.after is None:
            return None
        return str(math.ceil(self.after))

    def headers(self) -> dict:
        headers = {"content-type": "application/json"}
        if self.retry_after is not None:
            headers["retry-after"] = self.retry_after
        return headers

    def body(self) -> bytes:
        """The JSON answer. A failure's message stays out of it."""
        body = {"outcome": self.name}
        if self.name == "rejected":
            body["reason"] = self.reason
        elif self.name == "invalid":
            body["error"] = self.error.kind
            body["message"] = str(self.error)
        elif self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return _json_text(body).encode()

    def __repr__(self) -> str:
        return f"Outcome({self.name!r}, status={self.status})"


# --------------------------------------------------------------------------
# Receipts in the handler's own sqlite3 transaction
# --------------------------------------------------------------------------

def create_table(conn: sqlite3.Connection) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {RECEIPTS_TABLE} ("
                 "webhook_id TEXT PRIMARY KEY NOT NULL, processed_at INTEGER NOT NULL)")
    conn.execute(f"CREATE INDEX IF NOT EXISTS {RECEIPTS_TABLE}_processed_at "
                 f"ON {RECEIPTS_TABLE} (processed_at)")
    if conn.in_transaction:
        conn.commit()


def claim(conn: sqlite3.Connection, webhook_id: str, now: Optional[float] = None) -> bool:
    """Inserts the receipt in the caller's open transaction: True when this
    is the first time (process, then commit), False for a duplicate."""
    cursor = conn.execute(
        f"INSERT INTO {RECEIPTS_TABLE} (webhook_id, processed_at) VALUES (?, ?) "
        "ON CONFLICT (webhook_id) DO NOTHING",
        (webhook_id, int(time.time() if now is None else now)))
    return cursor.rowcount == 1


def prune(conn: sqlite3.Connection, before: float) -> int:
    """Deletes receipts processed before Unix time ``before``."""
    cursor = conn.execute(f"DELETE FROM {RECEIPTS_TABLE} WHERE processed_at < ?", (int(before),))
    if conn.in_transaction:
        conn.commit()
    return cursor.rowcount


def process(conn: sqlite3.Connection, delivery: Delivery,
            handler: Callable[[sqlite3.Connection, Delivery], Outcome]) -> Outcome:
    """Runs ``handler(conn, delivery)`` at most once per webhook-id: one
    ``BEGIN IMMEDIATE`` transaction holds the receipt and the handler's
    writes, committed only when it returns ``Outcome.processed()``. Any other
    outcome, an exception (500) or a failed commit rolls both back."""
    if conn.in_transaction:
        return Outcome.failed("the connection is already in a transaction")
    saved = conn.isolation_level
    # Autocommit mode: this function says where the transaction begins and ends.
    conn.isolation_level = None
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not claim(conn, delivery.webhook_id):
                conn.execute("ROLLBACK")
                return Outcome.duplicate()
            outcome = handler(conn, delivery)
            if not isinstance(outcome, Outcome):
                raise TypeError(f"the handler returned {outcome!r}, not an Outcome")
            conn.execute("COMMIT" if outcome.name == "processed" else "ROLLBACK")
            return outcome
        except Exception as err:
            log.exception("the handler failed; nothing was committed")
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return Outcome.failed(str(err))
    except sqlite3.Error as err:
        log.error("could not use the database: %s", err)
        return Outcome.failed(str(err))
    finally:
        conn.isolation_level = saved


def handle(verifier: Verifier, conn: sqlite3.Connection, headers: Headers, body: bytes,
           handler: Callable[[sqlite3.Connection, Delivery], Outcome],
           now: Optional[float] = None) -> Outcome:
    """receive() then process(): the whole request, as one Outcome."""
    try:
        delivery = receive(verifier, headers, body, now)
    except ReceiveError as err:
        log.warning("push refused: %s (%s)", err, err.kind)
        return Outcome.invalid(err)
    return process(conn, delivery, handler)
