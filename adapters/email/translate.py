"""OSLO melding → a Dutch e-mail to the authority, and the signed status links. PURE: no I/O; the
clock is a parameter.

- :func:`compose`: one message per melding, plain text and HTML. It carries the reporter's name,
  e-mail and phone — the receiver is the melding's owner, the one party that needs them; they
  appear nowhere else (not in the adapter's store, logs or the status page).
- Per melding: the reply address ``melding+<id>@<reply_domain>`` (Reply-To and envelope sender,
  so a reply or a bounce names its melding) and the Message-ID ``<melding-<id>@<reply_domain>>``
  — a re-sent message (after a crash between sending and recording it) is recognisably the same.
- :func:`sign` / :func:`verify`: the status link token ``<melding id>.<expiry unix>.<HMAC>``,
  HMAC-SHA256 over ``email-status|<adapter id>|<melding id>|<expiry>`` with the adapter's key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any
from zoneinfo import ZoneInfo

from adapters.base import StatusMapping
from adapters.email.config import Config
from hub.categories import Category, by_iri
from hub.melding import Melding, text_of
from hub.status import STATUSES, TOEGEWEZEN, Status, default_description

BRUSSELS = ZoneInfo("Europe/Brussels")


# ---------------------------------------------------------------------------------------------
# addresses and ids
# ---------------------------------------------------------------------------------------------
def reply_address(melding_id: str, config: Config) -> str:
    return f"{config.reply_local}+{melding_id}@{config.reply_domain}"


def message_id(melding_id: str, config: Config) -> str:
    return f"<melding-{melding_id}@{config.reply_domain}>"


def category_of(melding: Melding) -> Category | None:
    return next((c for c in (by_iri(i) for i in melding.category_iris) if c is not None), None)


def recipients(melding: Melding, config: Config) -> list[str]:
    category = category_of(melding)
    if category is not None and category.slug in config.category_recipients:
        return list(config.category_recipients[category.slug])
    return list(config.recipients)


# ---------------------------------------------------------------------------------------------
# signed status links
# ---------------------------------------------------------------------------------------------
class LinkInvalid(ValueError):
    """The token is not one this adapter signed (or was altered)."""


class LinkExpired(ValueError):
    """A genuine token whose validity has passed."""


def _mac(key: bytes, adapter_id: str, melding_id: str, expires: int) -> str:
    digest = hmac.new(key, f"email-status|{adapter_id}|{melding_id}|{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(melding_id: str, key: bytes, adapter_id: str, now: datetime, valid: timedelta) -> str:
    expires = int((now + valid).timestamp())
    return f"{melding_id}.{expires}.{_mac(key, adapter_id, melding_id, expires)}"


def verify(token: str, key: bytes, adapter_id: str, now: datetime) -> tuple[str, datetime]:
    """(melding id, expiry) of a valid token; LinkInvalid or LinkExpired otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1].isdigit() or len(token) > 200:
        raise LinkInvalid("not a status link")
    melding_id, expires_text, mac = parts
    expires = int(expires_text)
    if not hmac.compare_digest(mac.encode(), _mac(key, adapter_id, melding_id, expires).encode()):
        raise LinkInvalid("the link's signature does not match")
    when = datetime.fromtimestamp(expires, UTC)
    if now >= when:
        raise LinkExpired(f"the link expired on {when.isoformat()}")
    return melding_id, when


def status_link(melding_id: str, config: Config, key: bytes, now: datetime) -> tuple[str, datetime]:
    token = sign(melding_id, key, config.id, now, timedelta(days=config.link_valid_days))
    return f"{config.public_url}/status/{token}", datetime.fromtimestamp(int(token.split(".")[1]), UTC)


# ---------------------------------------------------------------------------------------------
# the message
# ---------------------------------------------------------------------------------------------
def local(when: datetime) -> str:
    return when.astimezone(BRUSSELS).strftime("%d-%m-%Y %H:%M")


@dataclass(frozen=True)
class Facts:
    """What the message says, in order; ``personal`` only for the owner."""

    category: str
    title: str
    descriptions: list[str]
    address: str | None
    point: tuple[float, float] | None
    submitted: str | None
    attachments: list[str]
    webpagina: str | None
    personal: list[tuple[str, str]]


def _address(melding: Melding) -> str | None:
    for a in melding.addresses:
        full = text_of(a.volledigAdres)
        if full:
            return full
        street = " ".join(p for p in (text_of(a.straatnaam), text_of(a.huisnummer)) if p)
        if text_of(a.busnummer):
            street += f" bus {text_of(a.busnummer)}"
        place = " ".join(p for p in (text_of(a.postcode), text_of(a.gemeentenaam)) if p)
        joined = ", ".join(p for p in (street, place) if p)
        if joined:
            return joined
    return None


def summary(melding: Melding) -> str:
    """Category and place: what the status page shows (no personal data, no free text)."""
    category = category_of(melding)
    parts = [category.label if category else "Melding", _address(melding)]
    return " — ".join(p for p in parts if p)


def facts(melding: Melding) -> Facts:
    category = category_of(melding)
    submitted = None
    for s in melding.statuses:
        if text_of(s.statusdatum):
            try:
                submitted = local(datetime.fromisoformat(text_of(s.statusdatum) or ""))
            except ValueError:
                pass
            break
    personal: list[tuple[str, str]] = []
    person = melding.melder
    if person is not None and not isinstance(person, str):
        if text_of(person.naam):
            personal.append(("Naam", text_of(person.naam) or ""))
        contacts = person.contactpunt if isinstance(person.contactpunt, list) else [person.contactpunt]
        for c in contacts:
            if c is None or isinstance(c, str):
                continue
            if text_of(c.email):
                personal.append(("E-mail", text_of(c.email) or ""))
            if text_of(c.telefoon):
                personal.append(("Telefoon", text_of(c.telefoon) or ""))
    points = melding.points()
    return Facts(
        category=category.label if category else "(onbekend)",
        title=text_of(melding.titel) or "Melding",
        descriptions=[text_of(b.beschrijving) or "" for b in melding.bodies if text_of(b.beschrijving)],
        address=_address(melding),
        point=(points[0][1], points[0][0]) if points else None,
        submitted=submitted,
        attachments=[text_of(b.bijlage) or "" for b in melding.bodies if text_of(b.bijlage)],
        webpagina=text_of(melding.webpagina),
        personal=personal,
    )


def _map_link(point: tuple[float, float]) -> str:
    lat, lon = point
    return f"https://www.openstreetmap.org/?mlat={lat:.6f}&mlon={lon:.6f}#map=19/{lat:.6f}/{lon:.6f}"


def compose(melding: Melding, config: Config, authority_name: str, link: str, link_expires: datetime,
            now: datetime) -> EmailMessage:
    """The message for a melding (headers, plain text, HTML)."""
    mid = melding.melding_id
    f = facts(melding)
    rows: list[tuple[str, str]] = [("Categorie", f.category), ("Titel", f.title)]
    if f.address:
        rows.append(("Adres", f.address))
    if f.point:
        rows.append(("Locatie", f"{f.point[0]:.6f}, {f.point[1]:.6f}"))
    if f.submitted:
        rows.append(("Ingediend", f.submitted))
    rows += [("Bijlage", a) for a in f.attachments]
    if f.webpagina:
        rows.append(("Opvolging", f.webpagina))
    rows.append(("Melding-id", mid))

    text = ["Beste,", "", f"Via Meldingen Hub kwam een melding binnen voor {authority_name}.", ""]
    width = max(len(k) for k, _ in rows) + 1
    text += [f"{(k + ':').ljust(width)} {v}" for k, v in rows]
    if f.point:
        text.append(f"{'Kaart:'.ljust(width)} {_map_link(f.point)}")
    text += ["", "Beschrijving:"] + [f"  {line}" for d in f.descriptions for line in d.splitlines()] + [""]
    if f.personal:
        text.append("Melder (persoonsgegevens: enkel voor de behandeling van deze melding):")
        text += [f"  {k}: {v}" for k, v in f.personal]
    else:
        text.append("De melder blijft anoniem.")
    text += [
        "",
        "Status doorgeven",
        f"Zet de status van deze melding via deze persoonlijke link (geldig tot {local(link_expires)}):",
        link,
        "De melder ziet de status en uw toelichting. Stuur deze link niet door.",
        "",
        "Met vriendelijke groeten,",
        config.from_name,
    ]

    def cell(v: str) -> str:
        return html.escape(v).replace("\n", "<br>")

    table = "".join(f"<tr><th align=\"left\" valign=\"top\">{cell(k)}</th><td>{cell(v)}</td></tr>" for k, v in rows)
    if f.point:
        table += f"<tr><th align=\"left\">Kaart</th><td><a href=\"{html.escape(_map_link(f.point))}\">OpenStreetMap</a></td></tr>"
    personal = (
        "<p><b>Melder</b> (persoonsgegevens: enkel voor de behandeling van deze melding)</p><ul>"
        + "".join(f"<li>{cell(k)}: {cell(v)}</li>" for k, v in f.personal) + "</ul>"
        if f.personal else "<p>De melder blijft anoniem.</p>"
    )
    body_html = (
        "<!DOCTYPE html><html lang=\"nl\"><body>"
        f"<p>Beste,</p><p>Via Meldingen Hub kwam een melding binnen voor {cell(authority_name)}.</p>"
        f"<table cellpadding=\"4\">{table}</table>"
        "<p><b>Beschrijving</b></p>" + "".join(f"<p>{cell(d)}</p>" for d in f.descriptions) + personal +
        "<p><b>Status doorgeven</b><br>"
        f"Zet de status van deze melding via <a href=\"{html.escape(link)}\">deze persoonlijke link</a> "
        f"(geldig tot {local(link_expires)}). De melder ziet de status en uw toelichting. Stuur deze link niet door.</p>"
        f"<p>Met vriendelijke groeten,<br>{cell(config.from_name)}</p></body></html>"
    )

    msg = EmailMessage()
    subject = f"Melding {f.category}: {f.title}"
    msg["Subject"] = subject if len(subject) <= 150 else subject[:149] + "…"
    msg["From"] = formataddr((config.from_name, config.from_address))
    msg["To"] = ", ".join(recipients(melding, config))
    msg["Reply-To"] = reply_address(mid, config)
    msg["Message-ID"] = message_id(mid, config)
    msg["Date"] = format_datetime(now.astimezone(UTC))
    msg["Content-Language"] = "nl"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Meldingen-Melding-Id"] = mid
    msg.set_content("\n".join(text) + "\n")
    msg.add_alternative(body_html, subtype="html")
    return msg


# ---------------------------------------------------------------------------------------------
# status
# ---------------------------------------------------------------------------------------------
def choices(config: Config) -> list[Status]:
    return [STATUSES[n] for n in config.status_choices]


def text_for(st: Status, config: Config, note: str | None) -> str:
    return note or config.status_texts.get(st.notation) or default_description(st)


def sent_text(authority_name: str, config: Config) -> str:
    return config.status_texts.get(TOEGEWEZEN) or f"Uw melding werd per e-mail bezorgd aan {authority_name}."


def status_mapping(config: Config) -> StatusMapping:
    """The form's choices, each set right after the mail went out (557 Toegewezen aan → choice must be legal)."""
    to_oslo: dict[str, Any] = {n: n for n in config.status_choices}
    return StatusMapping(
        vendor="E-mail", to_oslo=to_oslo, vendor_statuses=list(to_oslo), start=TOEGEWEZEN, entry=list(to_oslo),
        refusal_how="status form option 'Niet onze bevoegdheid' with a reason" if config.allow_refusal else None,
    )


def check(config: Config) -> list[str]:
    problems = status_mapping(config).problems()
    if not config.status_choices:
        problems.append("status_choices is empty: the receiver could not set any status")
    for n in config.status_choices:
        if n in ("511", "647", "733"):
            problems.append(f"{STATUSES[n]} is the citizen's to set, not the authority's")
    return problems
