import msgpack
import pytest

from schemas import envelope
from schemas.raw import RawRecord, SchemaError, decode_records, kafka_key


def make(**overrides):
    values = dict(id="01900000-0000-7000-8000-000000000001", received_ms=1, endpoint="ce",
                  project="shop.example", ip="1.2.3.4")
    values.update(overrides)
    return RawRecord(**values)


def test_roundtrip_and_params_merge_body_over_query():
    record = make(query=b"event=pv&ce_x=a+b&cv_name=%C3%A9&bad=%FF", form={"ce_x": 3},
                  visitor_key="cookie:c")
    again = RawRecord.from_bytes(record.to_bytes())
    assert again == record
    assert again.params() == {"event": "pv", "ce_x": 3, "cv_name": "é", "bad": "\ufffd"}


def test_key_spreads_requests_without_identifier():
    assert kafka_key("p", "cookie:c", "e1") == b"p\ncookie:c"
    assert kafka_key("p", "", "e1") == b"p\ne1"


@pytest.mark.parametrize("data", [b"\xc1", msgpack.packb([1]), msgpack.packb({"v": 99}),
                                  msgpack.packb({"v": 1, "id": "x"})],
                         ids=["not-msgpack", "not-a-map", "newer-version", "missing-fields"])
def test_unreadable_records_raise_schema_error(data):
    with pytest.raises(SchemaError):
        RawRecord.from_bytes(data)


def test_a_record_of_a_gateway_from_before_the_address_settings_leaves_them_to_the_registry():
    old = {"v": 1, "id": "e1", "received_ms": 1, "endpoint": "ce", "project": "p",
           "ip": "1.2.3.4", "over_quota": False}  # what such a gateway packed
    for record in (RawRecord.from_bytes(msgpack.packb(old)),
                   *decode_records(envelope.pack([msgpack.packb(old)]))):
        assert (record.anonymize_ip, record.locate) == (False, True)
    # and a reader that knows nothing of them (a worker from before) takes unknown keys
    newer = msgpack.unpackb(make(anonymize_ip=True, locate=False).to_bytes())
    assert (newer["anonymize_ip"], newer["locate"]) == (True, False)
    assert RawRecord.from_obj({**newer, "later": 1}).anonymize_ip is True
