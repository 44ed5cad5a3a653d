"""junit.xml for CI systems: one testcase per clause and profile, named by clause id, level and area as properties.

A testcase's status follows the verdict, so CI and the exit status agree:
judged FAIL/XPASS/TIMEOUT are <failure>, judged ERROR/NOT-RUN are <error>,
and XFAIL, SKIP and anything not judged at the chosen level are <skipped>
with the real outcome in the message and in the `outcome` property.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from contract_tests.report.model import FAILING, UNJUDGED, ClauseResult, Outcome, RunReport

# Worker output can hold bytes XML 1.0 forbids even as character references.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _safe(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _status(result: ClauseResult) -> str:
    if result.judged and result.outcome in FAILING:
        return "failure"
    if result.judged and result.outcome in UNJUDGED:
        return "error"
    return "" if result.outcome is Outcome.PASS else "skipped"


def _details(result: ClauseResult) -> str:
    blocks = [f"{result.clause.level.value}: {result.clause.requirement}", result.reason,
              f"Reproduce: {result.repro}"]
    blocks += [f"--- {e.title} ---\n{e.text}" for e in result.evidence]
    return _safe("\n\n".join(b for b in blocks if b))


def _testcase(suite: ET.Element, result: ClauseResult) -> str:
    case = ET.SubElement(suite, "testcase", name=result.clause.id,
                         classname=f"snakepit-contract.{result.profile}.{result.clause.area}",
                         time=f"{result.duration_s:.3f}")
    properties = ET.SubElement(case, "properties")
    for name, value in (("level", result.clause.level.value), ("area", result.clause.area),
                        ("profile", result.profile), ("subject", result.clause.subject),
                        ("outcome", result.outcome.value),
                        ("judged", str(result.judged).lower()), ("requirement", result.clause.requirement),
                        ("repro", result.repro)):
        ET.SubElement(properties, "property", name=name, value=_safe(value))
    status = _status(result)
    if status == "skipped":
        prefix = "" if result.judged or result.outcome in {Outcome.SKIP, Outcome.XFAIL} else "not judged: "
        ET.SubElement(case, "skipped", message=_safe(f"{prefix}{result.outcome.value}: {result.reason}"[:1000]))
    elif status:
        element = ET.SubElement(case, status, message=_safe(result.reason.split("\n", 1)[0][:1000]),
                                type=result.outcome.value)
        element.text = _details(result)
    return status


def render(report: RunReport) -> str:
    root = ET.Element("testsuites", name="snakepit-contract")
    totals = {"tests": 0, "failure": 0, "error": 0, "skipped": 0}
    for profile in report.profiles:
        mine = [r for r in report.results if r.profile == profile]
        suite = ET.SubElement(root, "testsuite", name=f"snakepit-contract.{profile}",
                              timestamp=report.started_at.isoformat(timespec="seconds"))
        properties = ET.SubElement(suite, "properties")
        for name, value in (("worker", _safe(report.worker.target)), ("level", report.level),
                            ("suite_version", report.suite_version), ("verdict", report.verdict().name.lower())):
            ET.SubElement(properties, "property", name=name, value=value)
        counts = {"failure": 0, "error": 0, "skipped": 0}
        for result in mine:
            status = _testcase(suite, result)
            if status:
                counts[status] += 1
        suite.set("tests", str(len(mine)))
        suite.set("failures", str(counts["failure"]))
        suite.set("errors", str(counts["error"]))
        suite.set("skipped", str(counts["skipped"]))
        suite.set("time", f"{sum(r.duration_s for r in mine):.3f}")
        totals["tests"] += len(mine)
        for key, n in counts.items():
            totals[key] += n
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failure"]))
    root.set("errors", str(totals["error"]))
    root.set("skipped", str(totals["skipped"]))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
