"""Tests of redrive_receiver.py: the shared vectors (which the Rust crate
passes too), and the refusals and duplicates a receiver must get right,
with receipts in a real SQLite file."""

import base64
import json
import pathlib
import sqlite3
import threading
import time

import pytest

import redrive_receiver as rr

VECTORS = json.loads((pathlib.Path(__file__).resolve().parents[2]
                      / "crates" / "receiver" / "tests" / "vectors.json").read_text())
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def request_of(vector):
    request = vector["request"]
    if "body_base64" in request:
        body = base64.b64decode(request["body_base64"])
    else:
        body = request.get("body", "").encode()
    return request["headers"], body


def verifier_of(vector):
    return rr.Verifier(vector["secrets"], tolerance=vector.get("tolerance", rr.DEFAULT_TOLERANCE))


def event_json(event):
    out = {"id": event.id, "source": event.source, "type": event.type, "specversion": event.specversion}
    for name in ("subject", "time", "datacontenttype", "dataschema"):
        if getattr(event, name) is not None:
            out[name] = getattr(event, name)
    out["extensions"] = event.extensions
    return out


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["name"])
def test_vector(vector):
    headers, body = request_of(vector)
    verifier, expect = verifier_of(vector), vector["expect"]
    try:
        verifier.verify(headers, body, now=vector["now"])
        verified = "ok"
    except rr.VerificationError as err:
        verified = err.kind
    assert verified == expect["verify"]
    try:
        delivery = rr.receive(verifier, headers, body, now=vector["now"])
    except rr.ReceiveError as err:
        assert err.kind == expect["receive"]
        assert rr.Outcome.invalid(err).status == expect["status"]
        return
    assert expect["receive"] == "ok"
    assert delivery.format == expect["format"]
    assert delivery.attempt == expect["attempt"]
    assert delivery.webhook_id == expect["webhook_id"]
    wanted = dict(expect["event"])
    data_json = wanted.pop("data_json", None)
    data_text = wanted.pop("data", None)
    data_base64 = wanted.pop("data_base64", None)
    assert event_json(delivery.event) == wanted
    if data_json is not None:
        assert delivery.event.data_json() == data_json
    elif data_text is not None:
        assert delivery.event.data == data_text.encode()
    elif data_base64 is not None:
        assert delivery.event.data == base64.b64decode(data_base64)
    else:
        assert delivery.event.data is None


def handler_for(kind):
    def handler(conn, delivery):
        conn.execute("INSERT INTO effects (event_id) VALUES (?)", (delivery.event.id,))
        if kind == "processed":
            return rr.Outcome.processed()
        if kind == "retry_later":
            return rr.Outcome.retry_later()
        if kind == "error":
            raise RuntimeError("the handler failed")
        if "retry_after" in kind:
            return rr.Outcome.retry_later(kind["retry_after"])
        if "reject" in kind:
            return rr.Outcome.reject(kind["reject"])
        raise AssertionError(f"unknown handler {kind}")
    return handler


def fresh_db(tmp_path):
    conn = sqlite3.connect(tmp_path / "receiver.db")
    rr.create_table(conn)
    conn.execute("CREATE TABLE effects (event_id TEXT NOT NULL)")
    conn.commit()
    return conn


def scenario_request():
    vector = next(v for v in VECTORS["vectors"] if v["name"] == VECTORS["scenario_vector"])
    headers, body = request_of(vector)
    return verifier_of(vector), headers, body, vector["now"]


@pytest.mark.parametrize("scenario", VECTORS["scenarios"], ids=lambda s: s["name"])
def test_scenario(scenario, tmp_path):
    conn = fresh_db(tmp_path)
    verifier, headers, body, now = scenario_request()
    outcomes = [rr.handle(verifier, conn, headers, body, handler_for(kind), now=now)
                for kind in scenario["handlers"]]
    expect = scenario["expect"]
    assert [o.name for o in outcomes] == expect["outcomes"]
    assert [o.status for o in outcomes] == expect["statuses"]
    assert [o.retry_after for o in outcomes] == expect["retry_after"]
    assert conn.execute("SELECT count(*) FROM effects").fetchone()[0] == expect["effects"]


def published():
    vector = VECTORS["vectors"][0]
    assert vector["request"]["headers"]["webhook-id"] == "msg_p5jXN8AQM9LWM0D4loKWxJek"
    return dict(vector["request"]["headers"]), vector["request"]["body"].encode(), vector["now"]


def test_sign_reproduces_the_published_vector():
    headers, body, now = published()
    assert rr.sign(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", now, body) == headers["webhook-signature"]


def order_request(secret=SECRET, webhook_id="dlv_1", timestamp=None, body=b'{"total": 5}'):
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": webhook_id, "webhook-timestamp": str(timestamp),
        "webhook-signature": rr.sign(secret, webhook_id, timestamp, body),
        "ce-id": "order-1", "ce-source": "/shop", "ce-type": "order.created", "ce-specversion": "1.0",
        "content-type": "application/json", "redrive-attempt": "1",
    }, body


def record(conn, delivery):
    conn.execute("INSERT INTO effects (event_id) VALUES (?)", (delivery.event.id,))
    return rr.Outcome.processed()


def effects(conn):
    return conn.execute("SELECT count(*) FROM effects").fetchone()[0]


def test_tampered_body_is_401_and_runs_nothing(tmp_path):
    conn = fresh_db(tmp_path)
    headers, _ = order_request()
    outcome = rr.handle(rr.Verifier(SECRET), conn, headers, b'{"total": 5000}', record)
    assert (outcome.status, outcome.error.kind) == (401, "no_matching_signature")
    assert effects(conn) == 0


def test_wrong_secret_is_401(tmp_path):
    conn = fresh_db(tmp_path)
    other = "whsec_" + base64.b64encode(b"not the subscription's secret").decode()
    headers, body = order_request(secret=other)
    outcome = rr.handle(rr.Verifier(SECRET), conn, headers, body, record)
    assert (outcome.status, outcome.error.kind) == (401, "no_matching_signature")
    assert json.loads(outcome.body())["error"] == "no_matching_signature"
    assert effects(conn) == 0


def test_stale_timestamp_is_401(tmp_path):
    conn = fresh_db(tmp_path)
    headers, body = order_request(timestamp=int(time.time()) - 301)
    outcome = rr.handle(rr.Verifier(SECRET), conn, headers, body, record)
    assert (outcome.status, outcome.error.kind) == (401, "timestamp_too_old")
    assert effects(conn) == 0


def test_replay_is_200_without_running_the_handler_again(tmp_path):
    conn = fresh_db(tmp_path)
    headers, body = order_request()
    first = rr.handle(rr.Verifier(SECRET), conn, headers, body, record)
    replay = rr.handle(rr.Verifier(SECRET), conn, headers, body, record)
    assert (first.name, first.status) == ("processed", 200)
    assert (replay.name, replay.status) == ("duplicate", 200)
    assert effects(conn) == 1


def test_a_push_arriving_while_the_first_is_processed_waits_then_is_a_duplicate(tmp_path):
    fresh_db(tmp_path).close()
    headers, body = order_request()
    verifier = rr.Verifier(SECRET)
    inside, release = threading.Event(), threading.Event()

    def slow(conn, delivery):
        inside.set()
        release.wait(10)
        return record(conn, delivery)

    results = {}

    def push(name, handler):
        conn = sqlite3.connect(tmp_path / "receiver.db", timeout=10, check_same_thread=False)
        results[name] = rr.handle(verifier, conn, headers, body, handler)

    first = threading.Thread(target=push, args=("first", slow))
    first.start()
    assert inside.wait(10)
    second = threading.Thread(target=push, args=("second", record))
    second.start()
    time.sleep(0.2)
    assert second.is_alive(), "the second push waits for the first's transaction"
    release.set()
    first.join(10)
    second.join(10)
    assert results["first"].name == "processed"
    assert results["second"].name == "duplicate"
    conn = sqlite3.connect(tmp_path / "receiver.db")
    assert effects(conn) == 1


def test_prune_forgets_old_receipts_only(tmp_path):
    conn = fresh_db(tmp_path)
    conn.execute("BEGIN")
    assert rr.claim(conn, "old", now=1_000)
    assert rr.claim(conn, "new", now=2_000)
    assert not rr.claim(conn, "new", now=2_001)
    conn.commit()
    assert rr.prune(conn, before=1_500) == 1
    remaining = [row[0] for row in conn.execute(f"SELECT webhook_id FROM {rr.RECEIPTS_TABLE}")]
    assert remaining == ["new"]


def test_retry_later_answers_503_with_retry_after_header():
    outcome = rr.Outcome.retry_later(30)
    assert outcome.status == 503
    assert outcome.headers()["retry-after"] == "30"
    assert json.loads(outcome.body()) == {"outcome": "retry_later", "retry_after": "30"}


def test_a_failure_keeps_its_message_out_of_the_answer():
    outcome = rr.Outcome.failed("password=hunter2 refused")
    assert outcome.status == 500
    assert b"hunter2" not in outcome.body()


def test_secrets_must_be_base64():
    with pytest.raises(ValueError):
        rr.Verifier("whsec_not base64!")
    with pytest.raises(ValueError):
        rr.Verifier([])
    assert "MfKQ" not in repr(rr.Verifier(SECRET))
