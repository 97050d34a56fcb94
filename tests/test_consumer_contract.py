"""docs/consumers.md, run for real: a routed melding read with the Kafka console consumer (the Java
tool, with ``print.headers``) and with the Python snippet printed in the doc, on a real broker."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from hub.topics import Header

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ROOT / "docs" / "topics"
CONSUMERS_MD = ROOT / "docs" / "consumers.md"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"


def local_broker_block() -> tuple[str, list[str]]:
    """The shell block of docs/consumers.md for the local broker: (setup script, java command)."""
    text = CONSUMERS_MD.read_text(encoding="utf-8")
    section = text[text.index("**With the project's local broker**"):]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "docs/consumers.md lost its local-broker example"
    setup, java = block.group(1).split("\njava ", 1)
    return setup, shlex.split("java " + java.replace("\\\n", " "))


@pytest.fixture(scope="module")
def console_consumer(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The console consumer command of docs/consumers.md, its setup run for real (in a temp dir)."""
    assert shutil.which("mvn") and shutil.which("java"), "the local broker's Java and Maven are needed"
    work = tmp_path_factory.mktemp("kafka-tools")
    setup, java = local_broker_block()
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", setup.replace(".run/kafka-tools", str(work))],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert list((work / "lib").glob("kafka-tools-*.jar")), "the setup of docs/consumers.md fetched no kafka-tools"
    return [arg.replace(".run/kafka-tools", str(work)) for arg in java]


def with_option(command: list[str], option: str, value: str) -> list[str]:
    i = command.index(option)
    return command[: i + 1] + [value] + command[i + 2 :]


def example(topic: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    meta = json.loads((TOPICS / f"{topic}.headers.json").read_text(encoding="utf-8"))
    value = json.dumps(json.loads((TOPICS / f"{topic}.jsonld").read_text(encoding="utf-8")), ensure_ascii=False)
    return meta["key"].encode(), value.encode("utf-8"), [(k, v.encode("utf-8")) for k, v in meta["headers"].items()]


async def produce_like_the_hub(bootstrap: str, topic: str, key: bytes, value: bytes, headers: list[Any]) -> None:
    """One aborted transaction (a crashed batch) and then the committed one, as the hub writes."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"test-{topic}", acks="all")
    await producer.start()
    try:
        try:
            async with producer.transaction():  # aborted when the block raises
                await producer.send_and_wait(topic, value=b'{"aborted": true}', key=b"aborted", headers=headers)
                raise _Abort
        except _Abort:
            pass
        async with producer.transaction():
            await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


class _Abort(Exception):
    pass


async def test_console_consumer_prints_the_headers(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., Awaitable[str]], console_consumer: list[str]
) -> None:
    assert CONSOLE_CONSUMER in console_consumer and "print.headers=true" in console_consumer
    assert console_consumer[console_consumer.index("--isolation-level") + 1] == "read_committed"
    topic = await kafka_topic_factory("meldingen.authority.awv-contract", partitions=1)
    key, value, headers = example("meldingen.authority.awv")
    await produce_like_the_hub(kafka_bootstrap, topic, key, value, headers)
    command = with_option(with_option(console_consumer, "--bootstrap-server", kafka_bootstrap), "--topic", topic)
    command += ["--group", "awv-reader", "--max-messages", "1", "--timeout-ms", "60000"]
    r = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stdout
    printed_headers, printed_key, printed_value = lines[0].split("\t", 2)
    assert printed_key == key.decode()
    assert json.loads(printed_value) == json.loads(value)  # the committed record, not the aborted one
    pairs = dict(h.split(":", 1) for h in printed_headers.split(","))
    assert pairs[Header.RULE_ID] == "regional-road-awv"
    assert pairs[Header.RULESET_VERSION] == dict(headers)[Header.RULESET_VERSION].decode()
    assert pairs[Header.AUTHORITY] == "awv" and pairs[Header.MUNICIPALITY_NIS] == "34022"
    assert "Processed a total of 1 messages" in r.stderr


def python_snippet() -> str:
    text = CONSUMERS_MD.read_text(encoding="utf-8")
    section = text[text.index("## With Python (aiokafka)"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "docs/consumers.md has no Python example"
    return match.group(1)


async def test_the_python_example_of_the_doc_reads_a_routed_melding(
    kafka_bootstrap: str, kafka_topic_factory: Callable[..., Awaitable[str]]
) -> None:
    topic = await kafka_topic_factory("meldingen.authority.imog-contract", partitions=1)
    key, value, headers = example("meldingen.authority.imog")
    await produce_like_the_hub(kafka_bootstrap, topic, key, value, headers)
    namespace: dict[str, Any] = {}
    exec(compile(python_snippet(), str(CONSUMERS_MD), "exec"), namespace)  # noqa: S102 - our own doc
    got: list[tuple[dict[str, str], dict[str, Any]]] = []

    async def store(h: dict[str, str], melding: dict[str, Any]) -> bool:
        got.append((h, melding))
        return False

    await namespace["consume"](kafka_bootstrap, topic, "imog-reader", store)
    ((h, melding),) = got
    assert h[Header.RULE_ID] == "waste-imog" and h[Header.AUTHORITY] == "imog"
    assert h[Header.MELDING_ID] == key.decode() and melding["identificator"]["notatie"] == key.decode()
    assert melding["behandelaar"] == "https://w3id.org/meldingen-hub/id/organisatie/imog"
