"""The schema registry of `nerve serve` (`--registry-listen`) through confluent-kafka 2.16's own registry
client and its Avro, JSON Schema and Protobuf serializers: subjects, versions, ids and compatibility levels
behave as on Confluent's registry, errors carry Confluent's HTTP statuses and error codes, records written
with a serializer through the broker come back equal through the matching deserializer, an old reader
schema reads records of a newer writer schema, and everything registered survives a restart. A few raw
REST answers are checked as well, since clients other than confluent-kafka read them directly.

Every test uses subjects and topics of its own and never changes the global compatibility level, so tests
run in any order. Registry clients cache what they read; tests that must see the server's answer use a
fresh client. Nothing asserts on timing; waits are bounded.
"""

import base64
import json
import shutil
import struct
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

from nerve_compat import PATIENCE_S, Nerve

# ------------------------------------------------------------------------------------------------ schemas

USER_VIEWED_PRODUCT_V1 = {
    "type": "record",
    "name": "UserViewedProduct",
    "namespace": "com.example.shop",
    "fields": [
        {"name": "user_id", "type": "string"},
        {"name": "product_id", "type": "string"},
        {"name": "viewed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "price_cents", "type": "int"},
    ],
}
# Compatible (BACKWARD and FULL): a new optional field with a default.
USER_VIEWED_PRODUCT_V2 = {
    **USER_VIEWED_PRODUCT_V1,
    "fields": USER_VIEWED_PRODUCT_V1["fields"] + [
        {"name": "session_id", "type": ["null", "string"], "default": None},
    ],
}
# Incompatible with BACKWARD: a new field without a default cannot be filled in from old records.
USER_VIEWED_PRODUCT_NO_DEFAULT = {
    **USER_VIEWED_PRODUCT_V1,
    "fields": USER_VIEWED_PRODUCT_V1["fields"] + [{"name": "referrer", "type": "string"}],
}

ORDER_JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Order",
    "type": "object",
    "properties": {
        "order_id": {"type": "integer"},
        "customer": {"type": "string"},
        "total": {"type": "number"},
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}},
                "required": ["sku", "quantity"],
            },
        },
        "gift": {"type": "boolean"},
    },
    "required": ["order_id", "customer", "lines"],
}


def avro(schema: dict) -> Schema:
    return Schema(json.dumps(schema), "AVRO")


def registry(nerve) -> SchemaRegistryClient:
    """A fresh client: nothing cached, so every answer comes from the registry."""
    return SchemaRegistryClient({"url": nerve.registry_url, "max.retries": 0})


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def registry_error(call, *args, **kwargs) -> SchemaRegistryError:
    with pytest.raises(SchemaRegistryError) as caught:
        call(*args, **kwargs)
    return caught.value


# ------------------------------------------------------------------------------------------------ the broker


def produce(bootstrap, topic, values):
    """Writes `values` (bytes) to partition 0 of `topic`; fails on any delivery error."""
    errors = []
    p = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        p.produce(topic, value=value, partition=0, on_delivery=lambda err, _msg: errors.append(err))
    assert p.flush(PATIENCE_S) == 0
    assert errors == [None] * len(values)


def consume(bootstrap, topic, count):
    """Reads `count` record values from partition 0 of `topic`, from the beginning."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compat-assign-only", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        values = []
        deadline = time.monotonic() + PATIENCE_S
        while len(values) < count and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                values.append(msg.value())
        assert len(values) == count, f"read {len(values)} of {count} records from {topic}"
        return values
    finally:
        c.close()


def framing(value: bytes):
    """The Confluent wire format's magic byte and schema id."""
    return struct.unpack(">bI", value[:5])


# ------------------------------------------------------------------------------------------------ raw REST


def rest(nerve, method, path, body=None, raw_body=None):
    """Sends one request to the registry; returns (HTTP status, content type, parsed JSON body)."""
    data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        nerve.registry_url + path,
        data=data,
        method=method,
        headers={
            "Content-Type": "application/vnd.schemaregistry.v1+json",
            "Accept": "application/vnd.schemaregistry.v1+json, application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=PATIENCE_S) as response:
            return response.status, response.headers.get("Content-Type"), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), json.loads(e.read())


# ------------------------------------------------------------------------------------------------ Protobuf


def page_view_class(file_name: str):
    """A `compat.shop.PageView` message class built from a FileDescriptorProto (no protoc), with a
    `google.protobuf.Timestamp` field so the file imports a well-known type."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name=file_name, package="compat.shop", syntax="proto3")
    file.dependency.append("google/protobuf/timestamp.proto")
    page_view = file.message_type.add(name="PageView")
    page_view.field.add(name="user_id", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    page_view.field.add(name="url", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    page_view.field.add(name="duration_ms", number=3, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    page_view.field.add(name="tags", number=4, type=F.TYPE_STRING, label=F.LABEL_REPEATED)
    page_view.field.add(
        name="viewed_at",
        number=5,
        type=F.TYPE_MESSAGE,
        type_name=".google.protobuf.Timestamp",
        label=F.LABEL_OPTIONAL,
    )
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("compat.shop.PageView"))


def page_views(cls):
    views = []
    for i in range(3):
        view = cls(user_id=f"user-{i}", url=f"/products/{i}", duration_ms=1000 * i, tags=["a", f"t{i}"])
        view.viewed_at.seconds = 1_700_000_000 + i
        view.viewed_at.nanos = 1000 * i
        views.append(view)
    return views


# ================================================================================================ the client


def test_compatible_evolution_gets_a_new_version_and_an_incompatible_one_is_refused_with_409(nerve):
    subject = unique("user-viewed-product-value")
    client = registry(nerve)
    v1_id = client.register_schema(subject, avro(USER_VIEWED_PRODUCT_V1))
    # Registering the same schema again is idempotent, also written differently.
    assert registry(nerve).register_schema(subject, Schema(json.dumps(USER_VIEWED_PRODUCT_V1, indent=2), "AVRO")) == v1_id
    assert client.get_versions(subject) == [1]

    assert client.test_compatibility(subject, avro(USER_VIEWED_PRODUCT_V2)) is True
    assert client.test_compatibility(subject, avro(USER_VIEWED_PRODUCT_NO_DEFAULT)) is False
    assert client.test_compatibility_all_versions(subject, avro(USER_VIEWED_PRODUCT_V2)) is True

    v2_id = client.register_schema(subject, avro(USER_VIEWED_PRODUCT_V2))
    assert v2_id != v1_id
    assert client.get_versions(subject) == [1, 2]

    refused = registry_error(client.register_schema, subject, avro(USER_VIEWED_PRODUCT_NO_DEFAULT))
    assert refused.http_status_code == 409
    assert refused.error_code == 409
    assert client.get_versions(subject) == [1, 2]


def test_subject_versions_ids_and_lookups_read_back_what_was_registered(nerve):
    subject = unique("user-viewed-product-value")
    other = unique("user-viewed-product-copy-value")
    v1_id = registry(nerve).register_schema(subject, avro(USER_VIEWED_PRODUCT_V1))
    v2_id = registry(nerve).register_schema(subject, avro(USER_VIEWED_PRODUCT_V2))
    # The same schema under another subject keeps its id.
    assert registry(nerve).register_schema(other, avro(USER_VIEWED_PRODUCT_V2)) == v2_id

    client = registry(nerve)
    latest = client.get_latest_version(subject)
    assert (latest.subject, latest.version, latest.schema_id) == (subject, 2, v2_id)
    assert latest.schema.schema_type == "AVRO"
    assert json.loads(latest.schema.schema_str) == USER_VIEWED_PRODUCT_V2
    first = client.get_version(subject, 1)
    assert (first.subject, first.version, first.schema_id) == (subject, 1, v1_id)
    assert json.loads(first.schema.schema_str) == USER_VIEWED_PRODUCT_V1
    assert client.get_versions(subject) == [1, 2]

    by_id = registry(nerve).get_schema(v1_id)
    assert by_id.schema_type == "AVRO"
    assert json.loads(by_id.schema_str) == USER_VIEWED_PRODUCT_V1
    # Ids are global: other tests may use the same schema under subjects of their own.
    assert {subject, other} <= set(client.get_subjects_by_schema_id(v2_id))
    assert {(subject, 2), (other, 1)} <= {(v.subject, v.version) for v in client.get_schema_versions(v2_id)}
    assert (subject, 1) not in {(v.subject, v.version) for v in client.get_schema_versions(v2_id)}

    found = registry(nerve).lookup_schema(subject, avro(USER_VIEWED_PRODUCT_V1))
    assert (found.subject, found.version, found.schema_id) == (subject, 1, v1_id)
    assert {subject, other} <= set(client.get_subjects())


def test_subject_compatibility_level_is_read_back_and_enforced(nerve):
    subject = unique("levels-value")
    client = registry(nerve)
    client.register_schema(subject, avro(USER_VIEWED_PRODUCT_V1))
    # No subject-level setting yet: Confluent answers 40408 for the subject, the global level stays.
    assert registry_error(client.get_compatibility, subject).error_code == 40408
    assert client.get_compatibility() == "BACKWARD"

    assert client.set_compatibility(subject, "FULL") == {"compatibility": "FULL"}
    assert client.get_compatibility(subject) == "FULL"
    assert client.get_compatibility() == "BACKWARD"
    # Under FULL a field without a default can be neither added nor removed.
    refused = registry_error(client.register_schema, subject, avro(USER_VIEWED_PRODUCT_NO_DEFAULT))
    assert (refused.http_status_code, refused.error_code) == (409, 409)

    assert client.set_compatibility(subject, "NONE") == {"compatibility": "NONE"}
    assert client.get_compatibility(subject) == "NONE"
    client.register_schema(subject, avro(USER_VIEWED_PRODUCT_NO_DEFAULT))
    assert client.get_versions(subject) == [1, 2]

    bad = registry_error(client.set_compatibility, subject, "SIDEWAYS")
    assert (bad.http_status_code, bad.error_code) == (422, 42203)


def test_versions_and_subjects_are_deleted_softly_then_permanently(nerve):
    subject = unique("deletions-value")
    client = registry(nerve)
    v1_id = client.register_schema(subject, avro(USER_VIEWED_PRODUCT_V1))
    client.register_schema(subject, avro(USER_VIEWED_PRODUCT_V2))

    # A version must be soft-deleted before it can be deleted permanently.
    assert registry_error(client.delete_version, subject, 1, permanent=True).error_code == 40407
    assert client.delete_version(subject, 1) == 1
    assert client.get_versions(subject) == [2]
    assert client.get_versions(subject, deleted=True) == [1, 2]
    assert registry_error(registry(nerve).get_version, subject, 1).error_code == 40402
    assert registry(nerve).get_version(subject, 1, deleted=True).schema_id == v1_id
    assert registry_error(registry(nerve).lookup_schema, subject, avro(USER_VIEWED_PRODUCT_V1)).error_code == 40403
    # The id still resolves: records written with it must stay readable.
    assert json.loads(registry(nerve).get_schema(v1_id).schema_str) == USER_VIEWED_PRODUCT_V1
    assert client.delete_version(subject, 1, permanent=True) == 1
    assert client.get_versions(subject, deleted=True) == [2]

    # Same for the subject.
    assert registry_error(client.delete_subject, subject, permanent=True).error_code == 40405
    assert client.delete_subject(subject) == [2]
    assert subject not in client.get_subjects()
    assert subject in client.get_subjects(deleted=True)
    assert registry_error(client.get_latest_version, subject).error_code == 40401
    assert client.delete_subject(subject, permanent=True) == [2]
    assert subject not in client.get_subjects(deleted=True)
    assert registry_error(client.get_versions, subject).error_code == 40401


def test_unknown_subjects_versions_ids_and_invalid_schemas_have_confluent_error_codes(nerve):
    subject = unique("errors-value")
    client = registry(nerve)
    client.register_schema(subject, avro(USER_VIEWED_PRODUCT_V1))

    for call, args, status, code in [
        (client.get_latest_version, (unique("no-such-subject"),), 404, 40401),
        (client.get_versions, (unique("no-such-subject"),), 404, 40401),
        (client.get_version, (subject, 99), 404, 40402),
        (client.get_schema, (2_000_000_000,), 404, 40403),
        (client.register_schema, (subject, Schema('{"type": "recrod", "name": "X"}', "AVRO")), 422, 42201),
        (client.register_schema, (subject, Schema('{"type": "record", "name": "X"', "AVRO")), 422, 42201),
        (client.register_schema, (unique("errors-json"), Schema('{"type": 12}', "JSON")), 422, 42201),
        (client.register_schema, (unique("errors-proto"), Schema("message {", "PROTOBUF")), 422, 42201),
    ]:
        error = registry_error(call, *args)
        assert (error.http_status_code, error.error_code) == (status, code), (call.__name__, args, error)


def test_avro_records_round_trip_through_a_topic(nerve):
    topic = unique("avro-views")
    ctx = SerializationContext(topic, MessageField.VALUE)
    serialize = AvroSerializer(registry(nerve), json.dumps(USER_VIEWED_PRODUCT_V2))
    records = [
        {"user_id": f"user-{i}", "product_id": f"sku-{i}", "viewed_at": 1_700_000_000_000 + i, "price_cents": 999 + i,
         "session_id": None if i % 2 else f"session-{i}"}
        for i in range(5)
    ]
    produce(nerve.bootstrap, topic, [serialize(r, ctx) for r in records])

    values = consume(nerve.bootstrap, topic, len(records))
    registered = registry(nerve).get_latest_version(f"{topic}-value")
    assert registered.version == 1
    assert {framing(v) for v in values} == {(0, registered.schema_id)}
    deserialize = AvroDeserializer(registry(nerve))
    got = [deserialize(v, ctx) for v in values]
    # timestamp-millis comes back as an aware datetime; compare it as milliseconds.
    for record in got:
        record["viewed_at"] = int(record["viewed_at"].timestamp() * 1000)
    assert got == records


def test_json_schema_records_round_trip_through_a_topic(nerve):
    topic = unique("json-orders")
    ctx = SerializationContext(topic, MessageField.VALUE)
    serialize = JSONSerializer(json.dumps(ORDER_JSON_SCHEMA), registry(nerve))
    orders = [
        {"order_id": i, "customer": f"c{i}", "total": 12.5 * i, "lines": [{"sku": f"sku-{i}", "quantity": i + 1}]}
        for i in range(4)
    ]
    orders[0]["gift"] = True
    produce(nerve.bootstrap, topic, [serialize(o, ctx) for o in orders])

    values = consume(nerve.bootstrap, topic, len(orders))
    registered = registry(nerve).get_latest_version(f"{topic}-value")
    assert registered.schema.schema_type == "JSON"
    assert json.loads(registered.schema.schema_str) == ORDER_JSON_SCHEMA
    assert {framing(v) for v in values} == {(0, registered.schema_id)}
    # The deserializer takes the writer's schema from the registry and validates each record with it.
    deserialize = JSONDeserializer(None, schema_registry_client=registry(nerve))
    assert [deserialize(v, ctx) for v in values] == orders


def test_protobuf_records_with_a_well_known_import_round_trip_through_a_topic(nerve):
    """By default (`skip.known.types`) the serializer registers the file alone: the registry must know
    google/protobuf/timestamp.proto itself."""
    topic = unique("proto-views")
    ctx = SerializationContext(topic, MessageField.VALUE)
    PageView = page_view_class(f"compat/{topic}.proto")
    serialize = ProtobufSerializer(PageView, registry(nerve), {"use.deprecated.format": False})
    views = page_views(PageView)
    produce(nerve.bootstrap, topic, [serialize(v, ctx) for v in views])

    values = consume(nerve.bootstrap, topic, len(views))
    registered = registry(nerve).get_latest_version(f"{topic}-value")
    assert registered.schema.schema_type == "PROTOBUF"
    assert registered.schema.references == []
    assert 'import "google/protobuf/timestamp.proto";' in registered.schema.schema_str
    assert "message PageView" in registered.schema.schema_str
    assert {framing(v) for v in values} == {(0, registered.schema_id)}
    assert {v[5] for v in values} == {0}  # message index [0]: the file's first message
    # With a registry client the deserializer also fetches and parses the writer's schema (serialized).
    deserialize = ProtobufDeserializer(PageView, {"use.deprecated.format": False}, schema_registry_client=registry(nerve))
    assert [deserialize(v, ctx) for v in values] == views


def test_protobuf_well_known_import_can_be_registered_as_a_reference(nerve):
    """With `skip.known.types` off the serializer registers google/protobuf/timestamp.proto under its own
    subject and refers to it."""
    topic = unique("proto-refs")
    ctx = SerializationContext(topic, MessageField.VALUE)
    PageView = page_view_class(f"compat/{topic}.proto")
    serialize = ProtobufSerializer(
        PageView, registry(nerve), {"use.deprecated.format": False, "skip.known.types": False}
    )
    views = page_views(PageView)
    produce(nerve.bootstrap, topic, [serialize(v, ctx) for v in views])

    client = registry(nerve)
    timestamp = client.get_latest_version("google/protobuf/timestamp.proto")
    assert "message Timestamp" in timestamp.schema.schema_str
    registered = client.get_latest_version(f"{topic}-value")
    assert [(r.name, r.subject, r.version) for r in registered.schema.references] == [
        ("google/protobuf/timestamp.proto", "google/protobuf/timestamp.proto", timestamp.version)
    ]
    assert registered.schema_id in client.get_referenced_by("google/protobuf/timestamp.proto", timestamp.version)

    values = consume(nerve.bootstrap, topic, len(views))
    assert {framing(v) for v in values} == {(0, registered.schema_id)}
    deserialize = ProtobufDeserializer(PageView, {"use.deprecated.format": False}, schema_registry_client=registry(nerve))
    assert [deserialize(v, ctx) for v in values] == views


def test_protobuf_message_indexes_name_the_same_message_in_the_registered_schema(nerve):
    """A record's message indexes are positions in the file: the schema the registry hands back must have
    the same message at each position as the file that was registered, map entry types included, or a
    reader resolving the indexes against the registry's copy decodes the payload as another message."""
    topic = unique("proto-indexes")
    ctx = SerializationContext(topic, MessageField.VALUE)
    pool = descriptor_pool.DescriptorPool()
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name=f"compat/{topic}.proto", package="compat.idx", syntax="proto3")
    file.message_type.add(name="First").field.add(name="x", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    second = file.message_type.add(name="Second")
    # protoc writes the nested types in declaration order; here `message Inner` precedes the map field.
    second.nested_type.add(name="Inner").field.add(name="s", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry = second.nested_type.add(name="LabelsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    second.field.add(name="labels", number=1, type=F.TYPE_MESSAGE, type_name=".compat.idx.Second.LabelsEntry",
                     label=F.LABEL_REPEATED)
    second.field.add(name="inner", number=2, type=F.TYPE_MESSAGE, type_name=".compat.idx.Second.Inner",
                     label=F.LABEL_OPTIONAL)
    pool.Add(file)
    Inner = message_factory.GetMessageClass(pool.FindMessageTypeByName("compat.idx.Second.Inner"))
    value = ProtobufSerializer(Inner, registry(nerve), {"use.deprecated.format": False})(Inner(s="nested"), ctx)
    # Header: magic byte, id, then the zigzag varints [count=2, 1, 0]: Second (1), its nested type 0.
    assert value[5:8] == b"\x04\x02\x00"

    schema_id = framing(value)[1]
    status, _, body = rest(nerve, "GET", f"/schemas/ids/{schema_id}?format=serialized")
    assert status == 200
    served = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(body["schema"]))
    assert [t.name for t in served.message_type] == ["First", "Second"]
    assert [t.name for t in served.message_type[1].nested_type] == ["Inner", "LabelsEntry"]
    deserialize = ProtobufDeserializer(Inner, {"use.deprecated.format": False}, schema_registry_client=registry(nerve))
    assert deserialize(value, ctx) == Inner(s="nested")


def test_avro_schema_with_a_reference_resolves_through_the_registry(nerve):
    """A record type registered under its own subject and referenced by name from another schema."""
    money_subject = unique("money")
    money = {"type": "record", "name": "Money", "namespace": "com.example.shop",
             "fields": [{"name": "cents", "type": "long"}, {"name": "currency", "type": "string"}]}
    client = registry(nerve)
    client.register_schema(money_subject, avro(money))
    purchase = {"type": "record", "name": "Purchase", "namespace": "com.example.shop",
                "fields": [{"name": "sku", "type": "string"}, {"name": "price", "type": "com.example.shop.Money"}]}
    reference = SchemaReference("com.example.shop.Money", money_subject, 1)
    topic = unique("avro-purchases")
    subject = f"{topic}-value"
    purchase_id = client.register_schema(subject, Schema(json.dumps(purchase), "AVRO", [reference]))
    got = registry(nerve).get_schema(purchase_id)
    assert [(r.name, r.subject, r.version) for r in got.references] == [("com.example.shop.Money", money_subject, 1)]

    ctx = SerializationContext(topic, MessageField.VALUE)
    serialize = AvroSerializer(registry(nerve), conf={"auto.register.schemas": False, "use.latest.version": True})
    record = {"sku": "sku-1", "price": {"cents": 1999, "currency": "EUR"}}
    produce(nerve.bootstrap, topic, [serialize(record, ctx)])
    [value] = consume(nerve.bootstrap, topic, 1)
    assert framing(value) == (0, purchase_id)
    assert AvroDeserializer(registry(nerve))(value, ctx) == record


def test_an_old_reader_schema_reads_records_of_a_newer_writer_schema(nerve):
    topic = unique("avro-evolution")
    ctx = SerializationContext(topic, MessageField.VALUE)
    old = {"user_id": "u1", "product_id": "sku-1", "viewed_at": 1_700_000_000_000, "price_cents": 100}
    new = {"user_id": "u2", "product_id": "sku-2", "viewed_at": 1_700_000_000_001, "price_cents": 200,
           "session_id": "s2"}
    first = AvroSerializer(registry(nerve), json.dumps(USER_VIEWED_PRODUCT_V1))(old, ctx)
    # The producer moves on to v2; the registry accepts it as BACKWARD-compatible.
    second = AvroSerializer(registry(nerve), json.dumps(USER_VIEWED_PRODUCT_V2))(new, ctx)
    produce(nerve.bootstrap, topic, [first, second])
    assert registry(nerve).get_versions(f"{topic}-value") == [1, 2]

    values = consume(nerve.bootstrap, topic, 2)
    assert framing(values[0])[1] != framing(values[1])[1]

    def millis(record):
        return {**record, "viewed_at": int(record["viewed_at"].timestamp() * 1000)}

    # A consumer still on v1 reads both, dropping the field it does not know.
    v1_reader = AvroDeserializer(registry(nerve), schema_str=json.dumps(USER_VIEWED_PRODUCT_V1))
    assert [millis(v1_reader(v, ctx)) for v in values] == [old, {k: v for k, v in new.items() if k != "session_id"}]
    # A consumer on v2 reads both, filling in the default for the old record.
    v2_reader = AvroDeserializer(registry(nerve), schema_str=json.dumps(USER_VIEWED_PRODUCT_V2))
    assert [millis(v2_reader(v, ctx)) for v in values] == [{**old, "session_id": None}, new]


# ================================================================================================ restart


@pytest.fixture
def own_nerve():
    workdir = Path(tempfile.mkdtemp(prefix="nerve-compat-registry-"))
    broker = Nerve(workdir / "data", workdir / "nerve.log")
    broker.start()
    yield broker
    code = broker.stop()
    assert code == 0, f"nerve exited with {code} after SIGTERM; log:\n{broker.log_tail()}"
    shutil.rmtree(workdir, ignore_errors=True)


def test_registry_state_survives_a_restart(own_nerve):
    nerve = own_nerve
    subject = unique("survivor-value")
    gone = unique("soft-deleted-value")
    client = registry(nerve)
    v1_id = client.register_schema(subject, avro(USER_VIEWED_PRODUCT_V1))
    v2_id = client.register_schema(subject, avro(USER_VIEWED_PRODUCT_V2))
    json_id = client.register_schema(unique("survivor-json-value"), Schema(json.dumps(ORDER_JSON_SCHEMA), "JSON"))
    client.set_compatibility(subject, "FULL_TRANSITIVE")
    client.delete_version(subject, 1)
    client.register_schema(gone, avro(USER_VIEWED_PRODUCT_V1))
    client.delete_subject(gone)
    topic = unique("survivor-topic")
    ctx = SerializationContext(topic, MessageField.VALUE)
    produce(nerve.bootstrap, topic, [AvroSerializer(registry(nerve), json.dumps(USER_VIEWED_PRODUCT_V1))(
        {"user_id": "u", "product_id": "p", "viewed_at": 1_700_000_000_000, "price_cents": 1}, ctx)])
    subjects_before = client.get_subjects()

    code = nerve.stop()
    assert code == 0, f"nerve exited with {code} after SIGTERM; log:\n{nerve.log_tail()}"
    nerve.start(port=nerve.port)

    client = registry(nerve)
    assert client.get_subjects() == subjects_before
    assert client.get_versions(subject) == [2]
    assert client.get_versions(subject, deleted=True) == [1, 2]
    assert client.get_latest_version(subject).schema_id == v2_id
    assert json.loads(client.get_schema(v1_id).schema_str) == USER_VIEWED_PRODUCT_V1
    assert json.loads(client.get_schema(json_id).schema_str) == ORDER_JSON_SCHEMA
    assert client.get_compatibility(subject) == "FULL_TRANSITIVE"
    assert gone not in client.get_subjects() and gone in client.get_subjects(deleted=True)
    # The records written before the restart still deserialize, and new schemas get new ids.
    [value] = consume(nerve.bootstrap, topic, 1)
    assert AvroDeserializer(registry(nerve))(value, ctx)["user_id"] == "u"
    fresh = {"type": "record", "name": "AfterRestart", "fields": [{"name": "x", "type": "int"}]}
    new_id = client.register_schema(unique("after-restart-value"), avro(fresh))
    assert new_id not in (v1_id, v2_id, json_id, framing(value)[1])
    assert json.loads(registry(nerve).get_schema(new_id).schema_str) == fresh


# ================================================================================================ raw REST


def test_rest_schema_types_lists_avro_json_and_protobuf(nerve):
    status, content_type, body = rest(nerve, "GET", "/schemas/types")
    assert status == 200
    assert content_type.startswith("application/vnd.schemaregistry.v1+json")
    assert sorted(body) == ["AVRO", "JSON", "PROTOBUF"]


def test_rest_latest_version_answers_with_subject_version_id_and_schema(nerve):
    subject = unique("rest-latest")
    status, _, registered = rest(nerve, "POST", f"/subjects/{subject}/versions",
                                 {"schema": json.dumps(USER_VIEWED_PRODUCT_V1)})
    assert status == 200 and set(registered) >= {"id"}
    status, content_type, body = rest(nerve, "GET", f"/subjects/{subject}/versions/latest")
    assert status == 200
    assert content_type.startswith("application/vnd.schemaregistry.v1+json")
    assert {k: body[k] for k in ("subject", "version", "id")} == {"subject": subject, "version": 1, "id": registered["id"]}
    assert json.loads(body["schema"]) == USER_VIEWED_PRODUCT_V1
    # Confluent leaves schemaType out for Avro (the default) and says it for the others.
    assert body.get("schemaType", "AVRO") == "AVRO"
    json_subject = unique("rest-latest-json")
    rest(nerve, "POST", f"/subjects/{json_subject}/versions",
         {"schemaType": "JSON", "schema": json.dumps(ORDER_JSON_SCHEMA)})
    status, _, body = rest(nerve, "GET", f"/subjects/{json_subject}/versions/latest")
    assert status == 200 and body["schemaType"] == "JSON"
    status, _, by_id = rest(nerve, "GET", f"/schemas/ids/{body['id']}")
    assert status == 200 and by_id["schemaType"] == "JSON" and json.loads(by_id["schema"]) == ORDER_JSON_SCHEMA


def test_rest_verbose_compatibility_check_explains_why(nerve):
    subject = unique("rest-compat")
    rest(nerve, "POST", f"/subjects/{subject}/versions", {"schema": json.dumps(USER_VIEWED_PRODUCT_V1)})
    path = f"/compatibility/subjects/{subject}/versions/latest?verbose=true"
    status, _, body = rest(nerve, "POST", path, {"schema": json.dumps(USER_VIEWED_PRODUCT_NO_DEFAULT)})
    assert status == 200
    assert body["is_compatible"] is False
    assert body["messages"] and all(isinstance(m, str) for m in body["messages"])
    assert any("referrer" in m for m in body["messages"]), body["messages"]
    status, _, body = rest(nerve, "POST", path, {"schema": json.dumps(USER_VIEWED_PRODUCT_V2)})
    assert (status, body) == (200, {"is_compatible": True, "messages": []})
    # Without verbose the answer is just the verdict.
    status, _, body = rest(nerve, "POST", f"/compatibility/subjects/{subject}/versions/1",
                           {"schema": json.dumps(USER_VIEWED_PRODUCT_V2)})
    assert (status, body) == (200, {"is_compatible": True})


def test_rest_malformed_json_body_is_a_400_with_an_error_code(nerve):
    subject = unique("rest-malformed")
    for raw in (b'{"schema": ', b"not json at all"):
        status, content_type, body = rest(nerve, "POST", f"/subjects/{subject}/versions", raw_body=raw)
        assert status == 400, body
        assert content_type.startswith("application/vnd.schemaregistry.v1+json")
        assert body["error_code"] == 400 and body["message"]
    # Nothing was registered.
    status, _, body = rest(nerve, "GET", f"/subjects/{subject}/versions")
    assert (status, body["error_code"]) == (404, 40401)


def test_rest_unknown_path_is_a_404_json_error(nerve):
    status, content_type, body = rest(nerve, "GET", "/no/such/endpoint")
    assert status == 404
    assert content_type.startswith("application/vnd.schemaregistry.v1+json")
    assert body["error_code"] == 404 and body["message"]
