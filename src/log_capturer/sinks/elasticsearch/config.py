"""The ``sinks.elasticsearch`` section: records written to Elasticsearch or OpenSearch with the
``_bulk`` API.

Besides the sink's own keys (endpoints, index, documents, auth, TLS, batching) it has the
delivery keys every sink of the engine has (``timeout``, ``queue_size``, ``queue_max_bytes``,
``dlq_config``, ``backpressure_config``, ``circuit_breaker``) and the ``encoding`` block every
sink has (:mod:`log_capturer.sinks.encoding`): the document is the json record it makes; with
``codec: raw`` or ``logfmt`` the document is ``{<timestamp_field>: <time>, "message": <the text>}``.
"""

from __future__ import annotations

import re
import time
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from log_capturer.config.base import Duration, Strict
from log_capturer.reliability.config import BackpressureConfig, CircuitBreakerConfig
from log_capturer.sinks.encoding import EncodingConfig
from log_capturer.sinks.tls import TLSConfig

#: Record fields an index can be taken from (``index_field``): the record's own, or one of its
#: ``labels`` / ``fields`` (``labels.<name>``, ``fields.<name>``).
INDEX_FIELDS = ("level", "source_type", "source_id")
_INDEX_FIELD = re.compile(r"^(level|source_type|source_id|labels\.[^.]+|fields\.[^.]+)$")
#: Characters an index name may not hold (Elasticsearch's rules), besides upper case.
BAD_INDEX_CHARS = frozenset('\\/*?"<>| ,#:')


class ElasticsearchAuthConfig(Strict):
    """How the sink authenticates: nothing, HTTP basic auth, or an API key."""

    type: Literal["none", "basic", "api_key"] = Field(
        "none", description="'none', 'basic' (username and password) or 'api_key'."
    )
    username: str = Field("", description="Basic auth user (ELASTICSEARCH_USERNAME overrides).")
    password: SecretStr = Field(
        SecretStr(""), description="Basic auth password (ELASTICSEARCH_PASSWORD overrides). Never logged."
    )
    api_key: SecretStr = Field(
        SecretStr(""),
        description="An API key, as Elasticsearch gives it encoded ('encoded' of the create API key "
        "answer, base64 of id:key), sent as 'Authorization: ApiKey <key>' "
        "(ELASTICSEARCH_API_KEY overrides). Never logged.",
    )

    @model_validator(mode="after")
    def _check(self) -> ElasticsearchAuthConfig:
        if self.type == "basic" and not self.username:
            raise ValueError(
                "auth.type is basic but auth.username is empty; set it or ELASTICSEARCH_USERNAME"
            )
        if self.type == "api_key" and not self.api_key.get_secret_value():
            raise ValueError(
                "auth.type is api_key but auth.api_key is empty; set it or ELASTICSEARCH_API_KEY"
            )
        return self


class BulkBatchConfig(Strict):
    """How records are grouped into ``_bulk`` requests: a request leaves when it holds
    ``max_events`` records or ``max_bytes`` bytes, or ``timeout`` after its first record."""

    max_events: int = Field(1000, ge=1, le=100_000, description="Most records in one _bulk request.")
    max_bytes: int = Field(
        5 << 20,
        ge=1024,
        description="Most bytes (uncompressed NDJSON) in one _bulk request; a single larger record is "
        "sent alone. Keep it under the server's http.max_content_length (100 MB by default).",
    )
    timeout: Duration = Field(
        0.05,
        description="How long the first record of a request may wait for more before the request "
        "leaves anyway.",
    )


class ElasticsearchDLQConfig(Strict):
    """What the sink parks in the local DLQ (``dispatcher.dlq_config``). Records the server refuses
    for their own sake (a mapping conflict, a closed or read-only index) are always parked, with the
    server's error."""

    send_on_timeout: bool = Field(
        True,
        description="A record the server keeps failing (away, overloaded) for 'timeout' is parked and "
        "acknowledged, to be sent by the DLQ's reprocessing once it recovers (with its document id, "
        "so a replay never makes a second document). False: it is retried until delivered, and its "
        "lines stay unacknowledged meanwhile.",
    )


class ElasticsearchSinkConfig(Strict):
    enabled: bool = Field(False, description="Write records to Elasticsearch or OpenSearch (the _bulk API).")
    endpoints: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:9200"],
        min_length=1,
        description="Base URLs of the cluster's nodes (http:// or https://, optionally with a path "
        "prefix). Requests go to the first that answers; a node that fails is tried again later.",
    )
    api_version: Literal["auto", "v6", "v7", "v8", "v9", "opensearch"] = Field(
        "auto",
        description="The server's API: 'auto' asks the server (GET /) before the first request; "
        "'v6' adds the '_doc' type Elasticsearch 6 requires; 'v7', 'v8', 'v9' (Elasticsearch) and "
        "'opensearch' (1.x, 2.x, 3.x) send no type.",
    )
    index: str = Field(
        "logs-%Y.%m.%d",
        min_length=1,
        description="The index (or data stream) records go to. strftime directives (%Y, %m, %d, %H...) "
        "are filled from each record's timestamp in UTC, one index per day with the default "
        "(Fluent Bit's Logstash_Format). For a data stream, name it without directives and set "
        "op_type: create.",
    )
    index_field: str = Field(
        "",
        description="A record field whose value names the index instead (level, source_type, "
        "source_id, labels.<name> or fields.<name>); records without it, or with a value that is "
        "not a valid index name, go to 'index'.",
    )
    op_type: Literal["create", "index"] = Field(
        "create",
        description="'create' (the default, required by data streams): a document whose id exists "
        "already is not written again, and the sink counts it as delivered (a replay after a "
        "crash). 'index' overwrites it with the same content.",
    )
    pipeline: str = Field("", description="The ingest pipeline each document goes through ('' : none).")
    document_id: Literal["source_position", "none"] = Field(
        "source_position",
        description="'source_position' (the default): each document's _id is computed from where "
        "its line was read (the file's device and inode, the line's byte offset and its text), so "
        "a retry, a DLQ replay or a reading again after a crash never makes a second document; see "
        "docs/elasticsearch-sink.md for what is stable across a restart. 'none': the server "
        "chooses ids (no idempotency, a little faster).",
    )
    timestamp_field: str = Field(
        "@timestamp",
        min_length=1,
        description="Name of the record's timestamp in the document (Kibana, OpenSearch "
        "Dashboards and data streams expect '@timestamp'; 'timestamp' keeps Kafka's record as it is).",
    )
    encoding: EncodingConfig = Field(
        default_factory=EncodingConfig,
        description="The document, the same block as sinks.kafka.encoding. codec json (the default): "
        "the record, with only_fields / except_fields (labels.app, fields.user.id) and "
        "timestamp_format (unix_ms: a number; map the field as a date in your index template). "
        "codec raw or logfmt: a document of two fields, timestamp_field (the line's time, RFC 3339) "
        "and message (the line as read, or the record as logfmt text), as Fluent Bit and Vector "
        "put an unparsed line.",
    )
    compression: Literal["gzip", "none"] = Field("gzip", description="Compress request bodies with gzip.")
    compression_level: int = Field(
        1,
        ge=1,
        le=9,
        description="gzip level (1: fastest). 1-3 compress with ISA-L (several times zlib's speed, "
        "about zlib's ratio at the same level); 4-9 with zlib.",
    )
    auth: ElasticsearchAuthConfig = Field(default_factory=ElasticsearchAuthConfig)
    tls: TLSConfig = Field(
        default_factory=TLSConfig,
        description="TLS for https:// endpoints: the CA to verify the server with, and a client "
        "certificate and key for mutual TLS (the same keys as sinks.kafka.tls).",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers sent with every request."
    )
    batch: BulkBatchConfig = Field(default_factory=BulkBatchConfig)
    concurrency: int = Field(
        2, ge=1, le=32, description="_bulk requests in flight at once (one connection each)."
    )
    request_timeout: Duration = Field(
        30.0, description="How long one request may take before it counts as failed (and is retried)."
    )
    queue_size: int = Field(
        20000,
        ge=1,
        description="Records the sink may hold unacknowledged (batching, in flight, waiting for a "
        "retry); its backpressure levels are shares of it.",
    )
    queue_max_bytes: int = Field(
        64 << 20, ge=1 << 20, description="The same, in bytes of records; whichever is reached first."
    )
    timeout: Duration = Field(
        30.0,
        description="The budget a failing cluster may hold the lines: a record still not delivered "
        "this long after it was handed over is parked in the local DLQ "
        "(dlq_config.send_on_timeout), and once the sink acknowledged nothing for this long the "
        "lines waiting for it overflow there too (see backpressure_config), so the other sinks and "
        "the sources go on.",
    )
    dlq_config: ElasticsearchDLQConfig = Field(default_factory=ElasticsearchDLQConfig)
    backpressure_config: BackpressureConfig = Field(default_factory=BackpressureConfig)
    circuit_breaker: CircuitBreakerConfig = Field(default_factory=CircuitBreakerConfig)

    @field_validator("endpoints")
    @classmethod
    def _endpoints(cls, value: list[str]) -> list[str]:
        out = []
        for url in value:
            if not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
                raise ValueError(
                    f"{url!r} is not an http:// or https:// URL; write e.g. 'http://127.0.0.1:9200'"
                )
            out.append(url.rstrip("/"))
        return out

    @field_validator("index")
    @classmethod
    def _index(cls, value: str) -> str:
        try:
            name = time.strftime(value, time.gmtime(0))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid strftime pattern: {exc}") from None
        if (
            name != name.lower()
            or any(c in BAD_INDEX_CHARS for c in name)
            or name.startswith(("-", "_", "+"))
        ):
            raise ValueError(
                f"{value!r} does not make a valid index name (lower case, no spaces or any of "
                "\\ / * ? \" < > | , # :, not starting with - _ +); e.g. 'logs-%Y.%m.%d'"
            )
        return value

    @field_validator("index_field")
    @classmethod
    def _index_field(cls, value: str) -> str:
        if value and not _INDEX_FIELD.match(value):
            raise ValueError(
                f"{value!r}: the index can come from level, source_type, source_id, "
                "labels.<name> or fields.<name>"
            )
        return value
