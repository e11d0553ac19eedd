"""CEL conditions: compiled once at load, checked for unknown names, evaluated per request.

A condition sees the request and its surroundings as these variables:

==============  =======================================================================
``action``      the tool name (string)
``params``      the tool's parameters (map)
``context``     the request's context (map)
``agent_id``    which agent asks (string or null); also ``session_id``, ``requested_by``
``risk``        the agent's own risk hint (``"low"`` .. ``"critical"``, or null)
``confidence``  the agent's confidence 0..1 (double, or null when not given)
``dry_run``     true for a dry run
``env``         the deployment environment (``production``, ``staging`` ...)
``now``         the time: ``hour``, ``minute``, ``time`` ("HH:MM"), ``weekday`` ("monday"),
                ``isoweekday`` (1 = Monday), ``date`` ("YYYY-MM-DD"), ``business_hours``,
                ``after_hours`` (booleans), all in the policy's time zone
==============  =======================================================================

Evaluation never raises: a condition that cannot be evaluated for a request (a missing
parameter, a type mismatch) is reported as an error, and the engine treats an error as "a
human must look at this" rather than guessing.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cel

from hitl.models import ApprovalRequest

__all__ = [
    "NOW_FIELDS",
    "VARIABLES",
    "Condition",
    "ConditionError",
    "build_context",
    "compile_condition",
    "request_variables",
    "time_variables",
]

VARIABLES = (
    "action",
    "params",
    "context",
    "agent_id",
    "session_id",
    "requested_by",
    "risk",
    "confidence",
    "dry_run",
    "env",
    "now",
)
_KNOWN = frozenset(VARIABLES)
_MACRO_VAR = re.compile(
    r"\.\s*(?:all|exists|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,"
)
_UNDEFINED = re.compile(r"Undefined variable or function: '([^']+)'")
_PARSE_POS = re.compile(r"ERROR: <input>:(\d+):(\d+): (.*)")
_NOW_FIELD = re.compile(r"\bnow\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)")
_NOW_WORD = re.compile(r"\bnow\b")
NOW_FIELDS = frozenset(
    {"hour", "minute", "time", "weekday", "isoweekday", "date", "business_hours", "after_hours"}
)


class ConditionError(Exception):
    """A condition could not be evaluated for one request (not a load-time error)."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One compiled CEL expression that must give true or false."""

    source: str
    program: cel.Program
    variables: frozenset[str]
    now_fields: frozenset[str] | None = None
    """The ``now.<field>`` names it reads (None: it uses ``now`` as a whole)."""

    def test(self, context: cel.Context) -> bool:
        """Evaluate against ``context``; ConditionError when it fails or is not a boolean."""
        try:
            result = self.program.execute(context)
        except Exception as exc:  # the extension raises KeyError/TypeError/RuntimeError/...
            raise ConditionError(_explain(exc)) from None
        if not isinstance(result, bool):
            raise ConditionError(f"gave {type(result).__name__} {result!r}, not true or false")
        return result


def compile_condition(source: str) -> Condition:
    """Compile ``source``; raise ValueError with a message a policy author can act on."""
    try:
        program = cel.compile(source)
    except Exception as exc:
        raise ValueError(_parse_message(str(exc))) from None
    names = set(program.variables())
    bound = set(_MACRO_VAR.findall(source))
    unknown = sorted(names - _KNOWN - bound)
    if unknown:
        raise ValueError(
            f"unknown variable {', '.join(repr(n) for n in unknown)}; conditions can use "
            f"{', '.join(VARIABLES)} (parameters are params.<name>)"
        )
    now_fields: frozenset[str] | None = None
    if "now" in names and "now" not in bound:
        fields = _NOW_FIELD.findall(source)
        if len(fields) == len(_NOW_WORD.findall(source)):
            now_fields = frozenset(fields)
            wrong = sorted(now_fields - NOW_FIELDS)
            if wrong:
                raise ValueError(
                    f"now has no field {', '.join(repr(w) for w in wrong)}; it has "
                    f"{', '.join(sorted(NOW_FIELDS))}"
                )
    condition = Condition(source, program, frozenset(names & _KNOWN), now_fields)
    for sample in _SAMPLES:
        try:
            result = program.execute(cel.Context(sample))
        except RuntimeError as exc:
            if m := _UNDEFINED.search(str(exc)):
                raise ValueError(
                    f"unknown function or variable {m.group(1)!r}; CEL's standard functions "
                    "are available (size, contains, startsWith, endsWith, matches, int, double, "
                    "string, has, all, exists, ...)"
                ) from None
            continue
        except Exception:  # a missing key in the sample request is fine
            continue
        if not isinstance(result, bool):
            raise ValueError(
                f"must give true or false, but gives {type(result).__name__} ({result!r}); "
                "compare it with something, e.g. params.amount > 100"
            )
    return condition


def _parse_message(text: str) -> str:
    found = _PARSE_POS.search(text)
    if not found:
        return f"not a valid CEL expression: {text}"
    line, column, what = found.groups()
    where = f"column {column}" if line == "1" else f"line {line}, column {column}"
    return f"not a valid CEL expression ({where} of the expression): {what}"


def _explain(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no key {exc.args[0]!r} in the request (use has(...) to test for it)"
    text = str(exc).split(". ")[0]
    return f"{type(exc).__name__}: {text}"


def time_variables(
    local: datetime.datetime,
    business_days: frozenset[int],
    start: datetime.time,
    end: datetime.time,
    holidays: frozenset[datetime.date],
) -> dict[str, Any]:
    """The ``now`` map for a local (time zone converted) moment."""
    wall = local.time()
    business = (
        local.isoweekday() in business_days and local.date() not in holidays and start <= wall < end
    )
    return {
        "hour": local.hour,
        "minute": local.minute,
        "time": f"{local.hour:02d}:{local.minute:02d}",
        "weekday": _WEEKDAYS[local.weekday()],
        "isoweekday": local.isoweekday(),
        "date": local.date().isoformat(),
        "business_hours": business,
        "after_hours": not business,
    }


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def request_variables(request: ApprovalRequest, env: str) -> dict[str, Any]:
    """Every variable except ``now``, from one request."""
    return {
        "action": request.action,
        "params": request.params,
        "context": request.context,
        "agent_id": request.agent_id,
        "session_id": request.session_id,
        "requested_by": request.requested_by,
        "risk": request.risk.value if request.risk is not None else None,
        "confidence": request.confidence,
        "dry_run": request.dry_run,
        "env": env,
    }


def build_context(values: Mapping[str, Any], names: frozenset[str]) -> cel.Context:
    """A CEL context with only ``names`` (converting values to CEL is the expensive part)."""
    return cel.Context({name: values[name] for name in names if name in values})


_NOW_SAMPLE = time_variables(
    datetime.datetime(2024, 1, 1, 12, 0),
    frozenset({1, 2, 3, 4, 5}),
    datetime.time(9),
    datetime.time(17),
    frozenset(),
)
_SAMPLES: tuple[dict[str, Any], ...] = (
    {
        "action": "sample_action",
        "params": {},
        "context": {},
        "agent_id": "agent",
        "session_id": "session",
        "requested_by": "someone",
        "risk": "medium",
        "confidence": 0.7,
        "dry_run": False,
        "env": "production",
        "now": _NOW_SAMPLE,
    },
)
