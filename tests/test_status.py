"""The status life cycle, status events and the pure status stage (no broker)."""

from __future__ import annotations

import csv
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.pipeline import Record
from hub.status import (
    AFGEROND,
    AFGEWEZEN,
    DEFINITIEF_GESLOTEN,
    GESLOTEN,
    HERINGEDIEND,
    IN_ONDERZOEK,
    INGEDIEND,
    INGETROKKEN,
    ONONTVANKELIJK,
    OPGELOST,
    STATUS_NS,
    STATUSES,
    TOEGEWEZEN,
    TRANSITIONS,
    IllegalTransition,
    StatusChange,
    StatusHeader,
    StatusStage,
    check_table,
    check_transition,
    is_legal,
    status,
    status_graph,
)
from hub.topics import DEADLETTER, STATUS, Header, status_topic
from hub.validation import ShaclValidator

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
KORTRIJK = "https://w3id.org/meldingen-hub/id/organisatie/kortrijk"


@pytest.fixture(scope="module")
def validator() -> ShaclValidator:
    return ShaclValidator()


def test_the_eleven_statuses_are_the_oslo_codelist_with_valid_phase_and_code() -> None:
    rows = list(csv.DictReader((SHARED / "oslo" / "status-codelists.derived.csv").open(encoding="utf-8")))
    by_scheme: dict[str, dict[str, dict[str, str]]] = {}
    for row in rows:
        by_scheme.setdefault(row["conceptScheme"].rsplit("/", 1)[-1], {})[row["concept"]] = row
    oslo = by_scheme["MeldingStatuswaarde"]
    assert {s.iri for s in STATUSES.values()} == set(oslo)
    for s in STATUSES.values():
        assert s.label == oslo[s.iri]["prefLabel_nl"]
        assert s.fase_iri in by_scheme["StatusVlaamseFase"], s
        assert s.code_iri in by_scheme["StatusVlaamseCode"], s
    # the hub's documented mapping (design/oslo-model.md), spot-checked
    assert (STATUSES["511"].fase, STATUSES["511"].code) == ("Samenstelling", "Ingediend")
    assert (STATUSES["557"].fase, STATUSES["557"].code) == ("Behandeling", "Ontvangen")
    assert (STATUSES["133"].fase, STATUSES["133"].code) == ("Uitvoering", "Uitgevoerd")
    assert (STATUSES["733"].fase, STATUSES["733"].code) == ("Afgerond", "Stopgezet")
    assert (STATUSES["751"].fase, STATUSES["751"].code) == ("Beslissing", "Onontvankelijk")


def test_the_transition_table_is_complete_and_sound() -> None:
    assert set(TRANSITIONS) == set(STATUSES)
    assert check_table() == []
    assert all(t in STATUSES for targets in TRANSITIONS.values() for t in targets)
    assert TRANSITIONS[AFGEROND] == TRANSITIONS[DEFINITIEF_GESLOTEN] == frozenset()


@pytest.mark.parametrize(
    ("previous", "new", "legal"),
    [
        (None, "511", True),
        (None, "557", False),
        ("511", "557", True),
        ("557", "496", True),
        ("496", "133", True),
        ("557", "557", True),  # reassigned / progress note
        ("133", "647", True),  # not fixed after all: re-submitted
        ("647", "557", True),
        ("133", "557", False),  # reopening goes through Heringediend
        ("751", "647", False),  # inadmissible cannot be completed
        ("956", "647", False),  # final
        ("138", "956", False),
        ("511", "511", False),
    ],
)
def test_transitions(previous: str | None, new: str, legal: bool) -> None:
    assert is_legal(previous, new) is legal
    if not legal:
        with pytest.raises(IllegalTransition, match="not allowed|starts as"):
            check_transition(previous, new)


def test_status_lookup_by_notation_or_iri() -> None:
    assert status("133") is status("https://data.vlaanderen.be/id/concept/MeldingStatuswaarde/133")
    with pytest.raises(KeyError, match="not a MeldingStatuswaarde"):
        status("999")


def test_a_status_event_is_a_valid_meldingstatus_with_the_melding_reference(validator: ShaclValidator) -> None:
    mid = str(uuid.uuid4())
    when = datetime(2026, 11, 21, 10, 2, tzinfo=UTC)
    change = StatusChange.create(mid, "133", KORTRIJK, "De put werd hersteld.", when)
    doc = change.to_jsonld()
    assert doc["@type"] == "Meldingstatus"
    assert doc["statuswaarde"].endswith("/133") and doc["statusdatum"] == "2026-11-21T10:02:00+00:00"
    assert doc["@reverse"] == {"heeftStatus": {"@id": f"https://w3id.org/meldingen-hub/id/melding/{mid}"}}
    graph = status_graph(doc)
    assert validator.validate(graph).conforms
    assert StatusChange.from_jsonld(json.loads(change.to_bytes())) == change
    # same melding, status and time → same event id (a re-delivery is recognisable)
    assert StatusChange.create(mid, "133", KORTRIJK, "anders", when).event_id == change.event_id
    assert StatusChange.create(mid, "133", KORTRIJK, None, when + timedelta(seconds=1)).event_id != change.event_id


def _record(value: bytes | None, headers: dict[str, str] | None = None) -> Record:
    return Record(
        value=value,
        key=b"k",
        headers=tuple((k, v.encode()) for k, v in (headers or {}).items()),
        topic=STATUS,
        partition=0,
        offset=7,
    )


@pytest.fixture(scope="module")
def stage(validator: ShaclValidator) -> StatusStage:
    return StatusStage(validator)


def test_stage_forwards_a_valid_event_to_its_channels_topic(stage: StatusStage) -> None:
    change = StatusChange.create(str(uuid.uuid4()), "557", KORTRIJK)
    outcome = stage.process(
        _record(change.to_bytes(), {Header.SOURCE: "open311-zwvl", StatusHeader.PREVIOUS: INGEDIEND})
    )
    assert not outcome.dead_lettered, outcome.reason
    assert outcome.output.topic == status_topic("open311-zwvl")
    assert outcome.output.key == change.melding_id.encode()
    assert outcome.output.value == change.to_bytes()
    headers = dict(outcome.output.headers)
    assert headers[Header.SOURCE] == b"open311-zwvl"
    assert headers[Header.MELDING_ID] == change.melding_id.encode()


@pytest.mark.parametrize(
    ("case", "error_class"),
    [
        ("no-source", "no-source"),
        ("illegal", "illegal-transition"),
        ("not-json", "not-json"),
        ("bad-status", "shape-violation"),
        ("no-timezone", "shape-violation"),
        ("not-a-status", "not-a-status"),
    ],
)
def test_stage_dead_letters_what_cannot_go_back(stage: StatusStage, case: str, error_class: str) -> None:
    change = StatusChange.create(str(uuid.uuid4()), "133", KORTRIJK)
    doc = change.to_jsonld()
    headers = {Header.SOURCE: "open311-zwvl"}
    value: bytes = change.to_bytes()
    if case == "no-source":
        headers = {}
    elif case == "illegal":
        headers[StatusHeader.PREVIOUS] = AFGEROND
    elif case == "not-json":
        value = b"status: opgelost"
    elif case == "bad-status":
        doc["statuswaarde"] = "https://data.vlaanderen.be/id/concept/MeldingStatuswaarde/999"
        value = json.dumps(doc).encode()
    elif case == "no-timezone":
        doc["statusdatum"] = "2026-11-21T10:02:00"
        value = json.dumps(doc).encode()
    elif case == "not-a-status":
        doc["@type"] = "Melding"
        value = json.dumps(doc).encode()
    outcome = stage.process(_record(value, headers))
    assert outcome.error_class == error_class, outcome.reason
    assert outcome.output.topic == DEADLETTER
    assert outcome.output.value == value, "a dead letter keeps the original bytes"
    out_headers = dict(outcome.output.headers)
    assert out_headers[Header.ERROR_CLASS] == error_class.encode()
    assert out_headers[Header.ORIGINAL_TOPIC] == STATUS.encode()


def test_the_life_cycle_table_in_docs_is_the_code() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "adapters.md").read_text(encoding="utf-8")
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0][:3] in STATUSES and cells[0][3:4] == " ":
            rows[cells[0][:3]] = cells
    assert set(rows) == set(STATUSES)
    for notation, (name, fase, code, kind, allowed) in rows.items():
        s = STATUSES[notation]
        assert (name, fase, code) == (str(s), s.fase, s.code)
        assert kind == ("final" if s.final else "open" if s.open else "closed")
        targets = rows["511"][4] if allowed == "same as 511" else allowed
        documented = set() if targets == "—" else set(targets.split(", "))
        assert documented == set(TRANSITIONS[notation]), notation


def test_compiled_validator_reports_on_status_events_as_pyshacl_does(validator: ShaclValidator) -> None:
    """The status stage validates with the compiled validator by default: on every status and on
    the mistakes adapters make with events, it must say exactly what pyshacl says, by itself."""
    from hub.shacl_compiled import CompiledValidator

    compiled = CompiledValidator()
    rnd = random.Random(2026)
    notations = [INGEDIEND, TOEGEWEZEN, IN_ONDERZOEK, OPGELOST, AFGEWEZEN, GESLOTEN, INGETROKKEN, HERINGEDIEND,
                 ONONTVANKELIJK, DEFINITIEF_GESLOTEN, AFGEROND]  # fmt: skip
    conforming = broken = 0
    for i in range(440):
        when = datetime(2026, 11, 21, 10, 2, tzinfo=UTC) + timedelta(minutes=i)
        text = rnd.choice([None, "De put werd hersteld.", "Doorgestuurd naar IMOG."])
        doc = StatusChange.create(str(uuid.uuid4()), notations[i % len(notations)], KORTRIJK, text, when).to_jsonld()
        kind = i % 8
        if kind == 1:
            doc["statuswaarde"] = STATUS_NS + "999"
        elif kind == 2:
            doc["statusdatum"] = "2026-11-21T10:02:00"
        elif kind == 3:
            del doc["statusdatum"]
        elif kind == 4:
            doc["statuswaarde"] = [doc["statuswaarde"], STATUS_NS + OPGELOST]
        elif kind == 5:
            doc["statusdatum"] = "gisteren"
        elif kind == 6:
            del doc["statuswaarde"]
        graph = status_graph(doc)
        expected, got = validator.validate(graph), compiled.validate(graph)
        assert got.conforms == expected.conforms, (kind, doc)
        key = lambda r: sorted(json.dumps(v, sort_keys=True) for v in r.as_json())  # noqa: E731
        assert key(got) == key(expected), (kind, doc)
        conforming += expected.conforms
        broken += not expected.conforms
    assert conforming >= 100 and broken >= 200, "both valid and broken events were compared"
    assert compiled.stats["pyshacl"] == 0, "no status event needed the pyshacl fallback"
