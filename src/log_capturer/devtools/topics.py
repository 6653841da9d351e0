"""The design document's topics, created explicitly (broker auto-create stays off)."""

from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_days: int
    purpose: str
    #: cleanup.policy=compact (the last record of each key is kept; retention_days is unused).
    compact: bool = False


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec("logs-high-priority", 6, 7, "ERROR, FATAL, CRITICAL"),
    TopicSpec("logs-normal-priority", 3, 7, "WARN, INFO"),
    TopicSpec("logs-low-priority", 2, 3, "DEBUG, TRACE"),
    TopicSpec("logs", 4, 7, "default (no or unknown level)"),
    TopicSpec("logs-dlq", 2, 30, "failed messages"),
    TopicSpec(
        "log-capturer-positions",
        1,
        0,
        "read positions committed with the lines (sinks.kafka.delivery: exactly_once)",
        compact=True,
    ),
)


@dataclass(frozen=True)
class TopicResult:
    name: str
    created: bool
    partitions: int
    detail: str


def create_topics(
    bootstrap: str,
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
    timeout: float = 30.0,
    topics: tuple[TopicSpec, ...] = TOPICS,
    extra_config: dict[str, str] | None = None,
    topic_config: dict[str, str] | None = None,
) -> list[TopicResult]:
    """Create missing topics; existing ones are left alone (idempotent).

    ``extra_config`` goes to the admin client, ``topic_config`` to every new topic
    (e.g. ``message.timestamp.type``).
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, **(extra_config or {})})
    existing = admin.list_topics(timeout=timeout).topics
    results: list[TopicResult] = []
    new: list[NewTopic] = []
    for spec in topics:
        if spec.name in existing:
            n = len(existing[spec.name].partitions)
            results.append(TopicResult(spec.name, False, n, "exists"))
            continue
        if spec.compact:
            config = {"cleanup.policy": "compact", **(topic_config or {})}
        else:
            config = {"retention.ms": str(spec.retention_days * DAY_MS), **(topic_config or {})}
        if min_insync_replicas is not None:
            config["min.insync.replicas"] = str(min_insync_replicas)
        new.append(
            NewTopic(
                spec.name,
                num_partitions=spec.partitions,
                replication_factor=replication_factor,
                config=config,
            )
        )
    if new:
        futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
        for name, fut in futures.items():
            spec = next(s for s in topics if s.name == name)
            try:
                fut.result()
                results.append(TopicResult(name, True, spec.partitions, "created"))
            except KafkaException as exc:
                err = exc.args[0]
                if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    results.append(TopicResult(name, False, spec.partitions, "exists"))
                else:
                    raise
    wait_for_topics(admin, [s.name for s in topics], timeout)
    order = {s.name: i for i, s in enumerate(topics)}
    return sorted(results, key=lambda r: order[r.name])


def delete_topics(bootstrap: str, names: list[str], timeout: float = 30.0) -> dict[str, str]:
    """Delete ``names``; returns the ones that could not be deleted, with the reason (a topic
    that does not exist counts as deleted)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    failed: dict[str, str] = {}
    if not names:
        return failed
    futures = admin.delete_topics(names, operation_timeout=timeout, request_timeout=timeout)
    for name, fut in futures.items():
        try:
            fut.result()
        except KafkaException as exc:
            err = exc.args[0]
            if err.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                failed[name] = err.str()
    return failed


def wait_for_topics(admin: object, names: list[str], timeout: float) -> None:
    """Wait until every topic has a leader for each partition (creation is asynchronous)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=timeout)  # type: ignore[attr-defined]
        ready = all(
            n in md.topics
            and md.topics[n].partitions
            and all(p.leader >= 0 for p in md.topics[n].partitions.values())
            for n in names
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {names} have no leaders after {timeout}s")
        time.sleep(0.2)
