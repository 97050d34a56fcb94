"""The consumers' contract: docs/asyncapi.yaml and docs/topics/ are generated, committed and current."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hub import __version__
from hub.asyncapi import FAKE_EMAIL, FAKE_NAME, FAKE_PHONE, asyncapi_document, asyncapi_yaml, topic_examples
from hub.demo import TEXTS
from hub.geo import MunicipalityIndex
from hub.melding import Melding
from hub.registry import Registry
from hub.routing import Router
from hub.refusal import parse_history, read_refusal
from hub.status import StatusChange
from hub.topics import DEADLETTER, INBOUND, REFUSALS, STATUS, TRIAGE, Header, authority_topic
from hub.validation import ShaclValidator

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "asyncapi.yaml"
TOPICS = ROOT / "docs" / "topics"
REGEN = "regenerate with `meldhub route asyncapi --examples docs/topics` and commit the result"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load()


@pytest.fixture(scope="module")
def examples(registry: Registry) -> dict[str, str]:
    return topic_examples(registry)


def test_regenerating_the_asyncapi_document_gives_the_committed_file(registry: Registry) -> None:
    assert DOC.read_text(encoding="utf-8") == asyncapi_yaml(registry), REGEN


def _without_hub_version(text: str) -> str:
    return text.replace(f'"{Header.HUB_VERSION}": "{__version__}"', f'"{Header.HUB_VERSION}": "*"')


def test_regenerating_the_topic_examples_gives_the_committed_files(examples: dict[str, str]) -> None:
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in TOPICS.iterdir() if p.suffix in (".json", ".jsonld")}
    assert sorted(on_disk) == sorted(examples), REGEN
    for name, text in examples.items():
        # hub-version follows the release: a version bump alone does not make the examples stale
        assert _without_hub_version(on_disk[name]) == _without_hub_version(text), f"{name}: {REGEN}"


def test_the_document_describes_every_topic_with_headers(registry: Registry) -> None:
    doc = asyncapi_document(registry)
    assert doc["asyncapi"] == "3.0.0" and doc["defaultContentType"] == "application/ld+json"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {
        INBOUND, "meldingen.authority.{authority}", DEADLETTER, REFUSALS, TRIAGE, STATUS, "meldingen.status.{source}"
    }
    authority = doc["channels"]["authority"]
    assert authority["parameters"]["authority"]["enum"] == [a.id for a in registry.authorities]
    assert {o["action"] for o in doc["operations"].values()} == {"send", "receive"}
    messages = doc["components"]["messages"]
    routed = messages["authority:Message"]
    assert {Header.RULE_ID, Header.RULESET_VERSION, Header.AUTHORITY, Header.MUNICIPALITY_NIS} <= set(
        routed["headers"]["required"]
    )
    assert "registry rule" in routed["headers"]["properties"][Header.RULE_ID]["description"]
    assert routed["payload"] == {"$ref": "#/components/schemas/Melding"}
    dead = messages["deadletter:Message"]
    assert Header.ERROR_CLASS in dead["headers"]["required"] and dead["contentType"] == "application/octet-stream"
    assert doc["components"]["schemas"]["DeadLetterValue"]["format"] == "binary"
    refusal = messages["refusals:SubscribeMessage"]["headers"]
    assert {Header.REFUSED_BY, Header.REFUSAL_REASON, Header.AUTHORITY} <= set(refusal["required"])
    assert Header.ROUTE_HISTORY in messages["triage:Message"]["headers"]["required"]
    for message in messages.values():
        assert message["correlationId"]["location"] == f"$message.header#/{Header.MELDING_ID}"
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
        for ref in _refs(message):
            assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_one_example_per_topic_routed_by_the_real_pipeline(registry: Registry, examples: dict[str, str]) -> None:
    topics = {authority_topic(a.id) for a in registry.authorities} | {INBOUND, DEADLETTER}
    flow = {REFUSALS, TRIAGE, STATUS}  # the refusal flow: checked in the next test
    assert {n.removesuffix(".headers.json") for n in examples if n.endswith(".headers.json")} == topics | flow
    router = Router(registry, MunicipalityIndex.load())
    validator = ShaclValidator()
    for topic in sorted(topics):
        meta = json.loads(examples[f"{topic}.headers.json"])
        doc = json.loads(examples[f"{topic}.jsonld"])
        assert meta["topic"] == topic and meta["key"] == doc["identificator"]["notatie"]
        headers = meta["headers"]
        if topic == DEADLETTER:
            assert headers[Header.ERROR_CLASS] == "shape-violation" and not validator.validate(doc).conforms
            continue
        assert validator.validate(doc).conforms, topic
        melding = Melding.from_jsonld(doc)
        if topic == INBOUND:
            assert "behandelaar" not in doc and set(headers) == {Header.SOURCE, Header.MELDING_ID}
            continue
        decision = router.route(melding.category_iris, melding.points())
        assert decision.topic == topic
        assert headers[Header.AUTHORITY] == decision.authority_id
        assert headers[Header.RULE_ID] == decision.rule_id
        assert headers[Header.RULESET_VERSION] == registry.version
        assert headers[Header.MUNICIPALITY_NIS] == decision.municipality_nis
        assert doc["behandelaar"] == decision.authority_iri
    rules = {json.loads(examples[f"{authority_topic(a)}.headers.json"])["headers"][Header.RULE_ID] for a in
             ("awv", "de-vlaamse-waterweg", "fluvius", "imog", "kortrijk")}
    assert rules >= {"regional-road-awv", "waterway-dvw", "waste-imog", "default-municipality"}


def test_the_refusal_examples_show_one_melding_refused_twice_then_triaged(examples: dict[str, str]) -> None:
    refusal = json.loads(examples[f"{REFUSALS}.headers.json"])["headers"]
    assert refusal[Header.REFUSED_BY] == refusal[Header.AUTHORITY] == "imog"
    assert read_refusal([(k, v.encode()) for k, v in refusal.items()]).refused == {"imog"}
    triage = json.loads(examples[f"{TRIAGE}.headers.json"])
    assert triage["key"] == json.loads(examples[f"{REFUSALS}.headers.json"])["key"]
    hops = [h.authority for h in parse_history(triage["headers"][Header.ROUTE_HISTORY])]
    assert hops == ["imog", "kortrijk"] and "behandelaar" not in json.loads(examples[f"{TRIAGE}.jsonld"])
    change = StatusChange.from_jsonld(json.loads(examples[f"{STATUS}.jsonld"]))
    assert change.status.notation == "557" and "Stad Kortrijk" in change.beschrijving


def test_examples_carry_no_personal_data(examples: dict[str, str]) -> None:
    texts = yaml.safe_load(TEXTS.read_text(encoding="utf-8"))
    realistic = [value for reporter in texts["melders"] for value in reporter]
    for name, text in examples.items():
        for value in realistic:
            assert value not in text, f"{name} contains demo reporter data {value!r}"
        if name.endswith(".jsonld"):
            melder = json.loads(text).get("melder")
            if melder:
                assert melder["naam"] == FAKE_NAME
                assert melder["contactpunt"] == {"@type": "Contactpunt", "email": FAKE_EMAIL, "telefoon": FAKE_PHONE}


def test_faststream_docs_gen_reads_the_app(tmp_path: Path) -> None:
    faststream = str(Path(sys.executable).with_name("faststream"))
    out = tmp_path / "asyncapi.yaml"
    r = subprocess.run(
        [faststream, "docs", "gen", "hub.asyncapi:app", "--yaml", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    generated = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert generated["asyncapi"] == "3.0.0"
    assert {c["address"] for c in generated["channels"].values()} >= {INBOUND, DEADLETTER}
