"""badge.svg: a flat shields-style badge, e.g. "snakepit-contract 0.13 | 87/87 MUST", drawn without a service."""

from __future__ import annotations

from html import escape

from contract_tests.report.model import Outcome, RunReport, Verdict

# Approximate advance widths of 11 px Verdana (shields' font), in px; anything unlisted counts as 7.
_WIDTHS = {**dict.fromkeys("ijl|.,:;!'", 3.2), **dict.fromkeys("frt()[] -/", 4.4),
           **dict.fromkeys("abcdeghknopqsuvxyz", 6.6), **dict.fromkeys("0123456789+", 7.0),
           **dict.fromkeys("mwMW", 10.0)}
_COLOURS = {"all passed": "#4c1", "conformant": "#a4a61d", "not conformant": "#e05d44", "no verdict": "#9f9f9f"}


def _width(text: str) -> int:
    return round(sum(_WIDTHS.get(ch, 7.5 if ch.isupper() else 7.0) for ch in text)) + 10


def texts(report: RunReport) -> tuple[str, str, str]:
    """Label, message and colour: which profiles, how many judged checks passed at which level, the verdict."""
    label = "snakepit-contract " + "+".join(p.removeprefix("snakepit-") for p in report.profiles)
    passed, judged = report.score()
    verdict = report.verdict()
    if verdict is Verdict.CONFORMANT:
        state = "all passed" if all(r.outcome is Outcome.PASS for r in report.judged) else "conformant"
    else:
        state = verdict.name.replace("_", " ").lower()
    message = f"{passed}/{judged} {report.level_label}" + ("" if verdict is Verdict.CONFORMANT else f" ({state})")
    return label, message, _COLOURS[state]


def render(report: RunReport) -> str:
    return draw(*texts(report))


def draw(label: str, message: str, colour: str) -> str:
    """The badge's SVG: label on grey, message on the colour."""
    left, right = _width(label), _width(message)
    total = left + right
    title = escape(f"{label}: {message}")
    label_x, message_x = left * 5, round((left + right / 2) * 10)
    label_len, message_len = (left - 10) * 10, (right - 10) * 10
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{title}">
  <title>{title}</title>
  <linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/>\
<stop offset="1" stop-opacity=".1"/></linearGradient>
  <clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath>
  <g clip-path="url(#r)">
    <rect width="{left}" height="20" fill="#555"/>
    <rect x="{left}" width="{right}" height="20" fill="{colour}"/>
    <rect width="{total}" height="20" fill="url(#s)"/>
  </g>
  <g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="110">
    <text x="{label_x}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" \
textLength="{label_len}">{escape(label)}</text>
    <text x="{label_x}" y="140" transform="scale(.1)" textLength="{label_len}">{escape(label)}</text>
    <text x="{message_x}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" \
textLength="{message_len}">{escape(message)}</text>
    <text x="{message_x}" y="140" transform="scale(.1)" textLength="{message_len}">{escape(message)}</text>
  </g>
</svg>
"""
