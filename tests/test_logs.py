"""The log gate: personal data never reaches a log line, coordinates and ids do."""

from __future__ import annotations

import io
import json

from hub import logs


def _lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_personal_keys_and_values_are_redacted_but_routing_facts_stay() -> None:
    buf = io.StringIO()
    logs.configure("INFO", stream=buf)
    log = logs.get_logger("t")
    log.info(
        "melding.routed",
        **logs.melding_fields("3f6c2a1e-8d4b-4c7a-9e21-5b0d7f6a1c42"),
        melder={"naam": "An Vermeulen"},
        email="an.vermeulen@example.org",
        reason="reporter wrote: bel me op 0470/12.34.56 of an.vermeulen@example.org",
        wkt="POINT (3.2649 50.8303)",
        municipality="34022",
    )
    (line,) = _lines(buf)
    text = json.dumps(line, ensure_ascii=False)
    for secret in ("An Vermeulen", "an.vermeulen@example.org", "0470/12.34.56"):
        assert secret not in text
    assert line["correlation_id"] == "3f6c2a1e-8d4b-4c7a-9e21-5b0d7f6a1c42"
    assert line["wkt"] == "POINT (3.2649 50.8303)"
    assert line["municipality"] == "34022"
    assert line["event"] == "melding.routed"


def test_scrub_masks_belgian_phone_formats() -> None:
    for phone in ("+32 470 12 34 56", "0032 470 123456", "0470/12.34.56", "056 27 72 00", "0486-55-66-77"):
        assert logs.scrub(f"tel {phone} graag") == f"tel {logs.REDACTED} graag"
    assert logs.scrub("2026-11-20T08:15:00+01:00 offset 1234567890") == "2026-11-20T08:15:00+01:00 offset 1234567890"


def test_library_log_records_become_json_lines_too() -> None:
    import logging

    buf = io.StringIO()
    logs.configure("INFO", stream=buf)
    logging.getLogger("aiokafka.consumer").warning("Group Coordinator Request failed for an.vermeulen@example.org")
    (line,) = _lines(buf)
    assert line["level"] == "warning"
    assert line["logger"] == "aiokafka.consumer"
    assert "an.vermeulen@example.org" not in line["event"]


def test_scrub_remembers_only_clean_strings_and_masks_every_time() -> None:
    """The clean-string memo that makes repeated log values cheap must never let personal data
    through on a second call, nor keep it in memory."""
    personal = "bel An op 0470 12 34 56 of an@example.be"
    for _ in range(3):
        masked = logs.scrub(personal)
        assert "0470" not in masked and "an@example.be" not in masked
    assert personal not in logs._CLEAN
    assert logs.scrub("meldingen.authority.imog") == "meldingen.authority.imog"
    assert "meldingen.authority.imog" in logs._CLEAN
    long_clean = "x" * (logs._CLEAN_MAX_CHARS + 1)
    assert logs.scrub(long_clean) == long_clean and long_clean not in logs._CLEAN


def test_a_uuid_stays_whole_though_its_digit_groups_look_like_a_phone_number() -> None:
    """A melding id is the correlation id admins grep for; its groups "0471-2345-6789" match the
    phone pattern, which must not blank part of it."""
    melding_id = "da903360-0471-2345-6789-ba8060163aa3"
    assert logs.scrub(melding_id) == melding_id
    assert logs.scrub(f"urn:uuid:{melding_id}") == f"urn:uuid:{melding_id}"
    # inside free text the number is still masked: a UUID is only exempt as the whole value
    assert logs.scrub("bel 0471-2345-6789") == f"bel {logs.REDACTED}"
