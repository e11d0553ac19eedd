"""Loading policy files: every bad file is refused with file:line; reloads keep the last good."""

from __future__ import annotations

import os
import textwrap
import threading
from pathlib import Path

import pytest

from hitl.errors import ConfigError
from hitl.models import VerdictKind
from hitl.policies import (
    DEFAULT_PATH,
    PolicyHolder,
    load_policy,
    parse_policy,
    parse_tests,
)
from tests.policies.util import DIRECTORY, req

GOOD = """\
version: "1"
tools:
  refund: medium
risk_levels:
  low: {policy: autonomous}
  medium: {policy: conditional, roles: [standard]}
  high: {policy: mandatory, roles: [manager]}
  critical: {policy: mandatory, roles: [manager], approvals: 2}
schedules:
  primary: {members: [alice, bob]}
rules:
  - name: big-refund
    action: refund
    when: params.amount > 100
    raise_risk: high
    destination: oncall:primary
"""


def refuse(text: str, with_directory: bool = True) -> str:
    """The ConfigError message for a policy text (named policy.yaml)."""
    body = textwrap.dedent(text) + (textwrap.dedent(DIRECTORY) if with_directory else "")
    with pytest.raises(ConfigError) as info:
        parse_policy(body, source="policy.yaml")
    return str(info.value)


def test_good_policy_loads() -> None:
    """The base text of these tests is valid."""
    policy = parse_policy(GOOD + textwrap.dedent(DIRECTORY), source="policy.yaml")
    assert VerdictKind.REVIEW == policy.evaluate(req("refund", params={"amount": 500})).kind


def test_bad_yaml_gives_the_line() -> None:
    """A YAML syntax error names the file and line."""
    message = refuse("tools:\n  refund: medium\n rules: [\n")
    assert message.startswith("policy.yaml:3: not valid YAML")


def test_not_a_mapping() -> None:
    """A file that is a list, not a mapping, is refused."""
    assert refuse("- a\n- b\n", with_directory=False).startswith("policy.yaml:1:")


def test_unknown_field_with_line_and_suggestion() -> None:
    """A typo is an error at its line, with the field path and a suggestion."""
    message = refuse(
        GOOD.replace("    raise_risk: high\n", "    raise_risk: high\n    aprovals: 2\n")
    )
    assert message.startswith("policy.yaml:16: rules[0].aprovals: unknown field 'aprovals'")
    assert "did you mean 'approvals'?" in message


def test_unknown_top_level_field() -> None:
    """An unknown top-level key is refused at its line."""
    message = refuse(GOOD + "rulez: []\n")
    assert message.startswith(
        "policy.yaml:17: rulez: unknown field 'rulez' (did you mean 'rules'?)"
    )


def test_wrong_value_type() -> None:
    """A bad enum value names the field and the allowed values."""
    message = refuse(GOOD.replace("raise_risk: high", "raise_risk: severe"))
    assert message.startswith("policy.yaml:15: rules[0].raise_risk: Input should be 'low'")


def test_bad_cel_syntax() -> None:
    """A CEL expression that does not parse is refused at load, at the when: line."""
    message = refuse(GOOD.replace("params.amount > 100", "params.amount >"))
    assert message.startswith("policy.yaml:14: rules[0].when: not a valid CEL expression")


def test_cel_unknown_variable() -> None:
    """A condition naming a variable that does not exist is refused."""
    message = refuse(GOOD.replace("params.amount > 100", "parms.amount > 100"))
    assert "policy.yaml:14: rules[0].when: unknown variable 'parms'" in message


def test_cel_unknown_function() -> None:
    """A condition calling a function that does not exist is refused."""
    message = refuse(GOOD.replace("params.amount > 100", "frobnicate(action)"))
    assert "policy.yaml:14: rules[0].when: unknown function or variable 'frobnicate'" in message


def test_cel_not_boolean() -> None:
    """A condition that gives a number instead of true/false is refused."""
    message = refuse(GOOD.replace("params.amount > 100", "size(action)"))
    assert "policy.yaml:14: rules[0].when: must give true or false" in message


def test_cel_unknown_now_field() -> None:
    """now.hours (a typo of now.hour) is refused."""
    message = refuse(GOOD.replace("params.amount > 100", "now.hours > 17"))
    assert "policy.yaml:14: rules[0].when: now has no field 'hours'" in message


def test_comprehension_variables_are_allowed() -> None:
    """Names bound by exists()/all() are not unknown variables."""
    text = GOOD.replace(
        "params.amount > 100", "has(params.tags) && params.tags.exists(t, t == 'x')"
    )
    parse_policy(text + textwrap.dedent(DIRECTORY), source="policy.yaml")


def test_role_nobody_holds() -> None:
    """A required role that no reviewer holds is refused (nobody could ever approve)."""
    message = refuse(GOOD.replace("roles: [manager]}", "roles: [managr]}", 1))
    assert "policy.yaml:7: risk_levels.high.roles[0]: no reviewer holds role 'managr'" in message
    assert "did you mean 'manager'?" in message


def test_quorum_nobody_can_form() -> None:
    """approvals: 3 among two eligible reviewers is refused."""
    message = refuse(GOOD.replace("approvals: 2}", "approvals: 3}"))
    assert "policy.yaml:8: risk_levels.critical.approvals: needs 3 different approvers" in message


def test_distinct_roles_more_than_approvals() -> None:
    """distinct_roles needing more people than approvals is refused."""
    message = refuse(
        GOOD.replace("approvals: 2}", "approvals: 1, distinct_roles: [manager, standard]}")
    )
    assert (
        "policy.yaml:8: risk_levels.critical: approvals is 1 but distinct_roles needs 2" in message
    )


def test_escalation_loop_same_target_twice() -> None:
    """A chain that notifies the same target twice is an escalation loop."""
    message = refuse(
        GOOD
        + """\
escalations:
  looping:
    - 10m -> oncall:primary
    - 20m -> user:bob
    - 30m -> oncall:primary
"""
    )
    assert "policy.yaml:21: escalations.looping[2]: escalation loop: oncall:primary" in message


def test_escalation_back_to_the_destination_is_a_loop() -> None:
    """Escalating to where the request was posted in the first place is a loop."""
    message = refuse(GOOD + "    escalation: ['10m -> oncall:primary', '1h -> timeout']\n")
    assert "policy.yaml:17: rules[0].escalation: escalation loop" in message


def test_escalation_steps_out_of_order_and_after_timeout() -> None:
    """Steps go forward in time, and nothing follows a timeout."""
    message = refuse(
        GOOD
        + "escalations:\n"
        + "  bad: ['20m -> user:bob', '10m -> user:alice', '1h -> timeout', '2h -> user:carol']\n"
    )
    assert "escalations.bad[1]: escalation steps must be in time order" in message
    assert "escalations.bad[3]: nothing can follow a timeout step" in message


def test_unknown_schedule_user_and_chain() -> None:
    """Destinations must name a real schedule, reviewer and chain."""
    message = refuse(
        GOOD
        + """\
    escalate_to: oncall:secondary
    escalation: paging
  - {name: two, action: refund, destination: "user:zed"}
"""
    )
    assert "policy.yaml:17: rules[0].escalate_to: no on-call schedule named 'secondary'" in message
    assert "policy.yaml:18: rules[0].escalation: no escalation chain named 'paging'" in message
    assert "policy.yaml:19: rules[1].destination: 'zed' is not in the reviewer directory" in message


def test_bad_destination_shorthand() -> None:
    """A destination must be channel:, oncall: or user:."""
    message = refuse(GOOD.replace("oncall:primary", "pager:primary"))
    assert "policy.yaml:16: rules[0].destination: 'pager:primary' is not a destination" in message


@pytest.mark.parametrize(
    ("written", "target"),
    [("teams:Approvals", "teams:Approvals"), ("slack:#ops", "slack:#ops"),
     ("channel:teams:19:x@thread.tacv2", "teams:19:x@thread.tacv2")],
)  # fmt: skip
def test_platform_destinations_are_channels(written: str, target: str) -> None:
    """``teams:Name`` and ``slack:#name`` are shorthand for one platform's ``channel:``."""
    policy = parse_policy(GOOD.replace("oncall:primary", f'"{written}"') +
                          textwrap.dedent(DIRECTORY), source="policy.yaml")  # fmt: skip
    destination = policy.evaluate(req("refund", params={"amount": 500})).destination
    assert destination is not None
    assert ("channel", target) == (destination.kind, destination.target)


def test_bad_duration() -> None:
    """Durations read like 10m; anything else is refused with the accepted forms."""
    message = refuse(GOOD + "timeout: ten minutes\n")
    assert "policy.yaml:17: timeout: 'ten minutes' is not a duration" in message


def test_duplicate_keys_and_rule_names() -> None:
    """A key given twice (YAML would keep the last silently) and a rule name used twice."""
    message = refuse(GOOD.replace("  refund: medium\n", "  refund: medium\n  refund: low\n"))
    assert "policy.yaml:4: tools.refund: duplicate key (first defined on line 3)" in message
    message = refuse(GOOD + "  - {name: big-refund, action: refund}\n")
    assert "policy.yaml:17: rules[1].name: rule name 'big-refund' is already used" in message


def test_rule_for_unregistered_tool() -> None:
    """A rule naming a tool missing from a non-empty registry is a typo until proven otherwise."""
    message = refuse(GOOD.replace("    action: refund\n", "    action: refnud\n"))
    assert "policy.yaml:13: rules[0].action: action 'refnud' is not in the tool registry" in message


def test_autonomous_rule_for_high_risk_is_refused() -> None:
    """A rule that can never apply (autonomous for a high-risk request) is an error."""
    message = refuse(GOOD + "    policy: autonomous\n")
    assert "policy.yaml:17: rules[0].policy: this rule is for high-risk requests" in message


def test_high_level_cannot_be_autonomous() -> None:
    """risk_levels.high cannot be autonomous or conditional."""
    message = refuse(
        GOOD.replace("high: {policy: mandatory, roles: [manager]}", "high: {policy: autonomous}")
    )
    assert "policy.yaml:7: risk_levels.high.policy: high risk cannot be autonomous" in message


def test_missing_risk_level() -> None:
    """risk_levels must list all four levels."""
    message = refuse(GOOD.replace("  low: {policy: autonomous}\n", ""))
    assert "risk_levels: every risk level needs an entry; missing: low" in message


def test_undeclared_role_when_roles_are_declared() -> None:
    """With a roles: section, every role used must be declared there."""
    message = refuse(GOOD + "roles: {standard: '', manager: ''}\n")
    assert "reviewers[2].roles[0]: role 'security' is not declared under roles:" in message


def test_role_include_cycle() -> None:
    """A role that includes itself through others is refused."""
    message = refuse(
        GOOD + "roles:\n  a: {includes: [b]}\n  b: {includes: [a]}\n", with_directory=False
    )
    assert "roles.a: role 'a' includes itself" in message


def test_alias_shared_by_two_people() -> None:
    """A Slack id or email may identify one person only."""
    message = refuse(
        "reviewers:\n  - {id: a, slack_id: U1}\n  - {id: b, slack_id: u1}\n", with_directory=False
    )
    assert "policy.yaml:3: reviewers[1].slack_id: 'u1' already identifies reviewer 'a'" in message


def test_all_problems_are_reported_sorted_by_line() -> None:
    """Several problems come out together, one line each, in file order."""
    broken = GOOD.replace("params.amount > 100", "params.amount >")
    message = refuse(broken.replace("oncall:primary", "oncall:nobody"))
    lines = message.splitlines()
    assert 2 == len(lines)
    assert lines[0].startswith("policy.yaml:14:") and lines[1].startswith("policy.yaml:16:")
    schema = refuse(GOOD.replace("raise_risk: high", "raise_risk: severe") + "bogus: 1\n")
    assert ["policy.yaml:15", "policy.yaml:17"] == [ln.split(": ")[0] for ln in schema.splitlines()]


def test_version_ignores_comments_and_layout() -> None:
    """The version hashes the normalized config, not the text; the declared version is kept."""
    base = GOOD + textwrap.dedent(DIRECTORY)
    a = parse_policy(base)
    b = parse_policy("# a comment\n" + base.replace("refund: medium", "refund:   medium  # money"))
    c = parse_policy(base.replace("params.amount > 100", "params.amount > 200"))
    assert a.version == b.version
    assert a.version != c.version
    assert a.version.endswith("+1") and a.version.startswith("sha256:")
    undeclared = parse_policy(base.replace('version: "1"\n', ""))
    assert 23 == len(undeclared.version)


def test_load_policy_from_file_and_missing_file(tmp_path: Path) -> None:
    """load_policy reads a file; a missing file is a ConfigError that says what to check."""
    path = tmp_path / "ops.yaml"
    path.write_text(GOOD + textwrap.dedent(DIRECTORY))
    policy = load_policy(path, env="staging")
    assert (str(path), "staging") == (policy.source, policy.env)
    with pytest.raises(ConfigError, match="no such policy file"):
        load_policy(tmp_path / "nope.yaml")


def test_test_file_is_loaded_next_to_the_policy(tmp_path: Path) -> None:
    """ops_test.yaml beside ops.yaml is loaded as the policy's tests; a bad one gives file:line."""
    path = tmp_path / "ops.yaml"
    path.write_text(GOOD + textwrap.dedent(DIRECTORY))
    tests = tmp_path / "ops_test.yaml"
    tests.write_text(
        "tests:\n  - name: t\n    request: {action: refund}\n    expect: {kind: review}\n"
    )
    assert ["t"] == [case.name for case in load_policy(path).tests]
    tests.write_text(
        "tests:\n  - name: t\n    request: {action: refund, parms: {}}\n    expect: {}\n"
    )
    with pytest.raises(ConfigError, match=r"ops_test.yaml:3: tests\[0\].request.parms"):
        load_policy(path)
    assert [] == load_policy(path, with_tests=False).tests


def test_parse_tests_refuses_unknown_expectations() -> None:
    """An expectation with a typo is refused, not silently ignored."""
    text = "tests:\n  - name: t\n    request: {action: a}\n    expect: {knd: review}\n"
    with pytest.raises(ConfigError, match=r"t.yaml:4: tests\[0\].expect.knd: unknown field"):
        parse_tests(text, "t.yaml")


def test_holder_keeps_last_good_policy(tmp_path: Path) -> None:
    """A failed reload keeps the last good policy in force and reports the error."""
    path = tmp_path / "ops.yaml"
    path.write_text(GOOD + textwrap.dedent(DIRECTORY))
    holder = PolicyHolder(str(path))
    good = holder.current
    assert holder.reload_if_changed() is None

    path.write_text(
        GOOD.replace("params.amount > 100", "params.amount >") + textwrap.dedent(DIRECTORY)
    )
    os.utime(path, ns=(1, 1))
    result = holder.reload_if_changed()
    assert result is not None
    ok, message = result
    assert not ok
    assert f"{path}:14: rules[0].when" in message and good.version in message
    assert good is holder.current
    assert holder.last_error is not None
    assert holder.reload_if_changed() is None

    path.write_text(GOOD.replace("100", "200") + textwrap.dedent(DIRECTORY))
    os.utime(path, ns=(2, 2))
    ok, message = holder.reload_if_changed() or (False, "")
    assert ok and "policy reloaded" in message
    assert good.version != holder.current.version
    assert holder.last_error is None


def test_holder_reports_unchanged_and_missing_files(tmp_path: Path) -> None:
    """Reloading the same content says so; a deleted file keeps the last good policy."""
    path = tmp_path / "ops.yaml"
    path.write_text(GOOD + textwrap.dedent(DIRECTORY))
    holder = PolicyHolder(path)
    assert (True, f"policy unchanged: {holder.current.version} ({path})") == holder.reload()
    before = holder.current
    path.unlink()
    ok, message = holder.reload_if_changed() or (True, "")
    assert not ok and "no such policy file" in message
    assert before is holder.current


def test_holder_refuses_a_bad_first_load(tmp_path: Path) -> None:
    """A service must not start without a valid policy."""
    path = tmp_path / "ops.yaml"
    path.write_text("tools: [\n")
    with pytest.raises(ConfigError, match="ops.yaml:2"):
        PolicyHolder(path)


def test_holder_default_and_concurrent_reloads() -> None:
    """The holder for the shipped policy reloads safely from several threads."""
    holder = PolicyHolder(None)
    assert DEFAULT_PATH == holder.path
    results: list[tuple[bool, str]] = []
    threads = [threading.Thread(target=lambda: results.append(holder.reload())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [True] * 4 == [ok for ok, _ in results]
    assert "<default>" == holder.current.source


def test_alias_clash_points_at_the_right_field() -> None:
    """The clash is reported on the field that repeats the other person's id."""
    message = refuse(
        "reviewers:\n  - {id: a, email: a@x.io}\n  - {id: b, teams_id: A@X.IO}\n",
        with_directory=False,
    )
    assert (
        "policy.yaml:3: reviewers[1].teams_id: 'A@X.IO' already identifies reviewer 'a'" in message
    )


@pytest.mark.parametrize(
    ("line", "key", "shown"),
    [
        ("{id: b, email: 'A@x.io\u200b'}", "email", "'a@x.io'"),
        ("{id: b, slack_id: Ｕ１}", "slack_id", "'u1'"),
        ("{id: A, teams_id: t2}", "id", "'a'"),
    ],
)
def test_ids_that_differ_only_in_spelling_clash(line: str, key: str, shown: str) -> None:
    """Two people whose ids or emails canonicalize alike are refused, naming the spelling."""
    message = refuse(
        f"reviewers:\n  - {{id: a, slack_id: U1, email: a@x.io}}\n  - {line}\n",
        with_directory=False,
    )
    assert f"policy.yaml:3: reviewers[1].{key}: " in message
    assert f"already identifies reviewer 'a' (compared as {shown})" in message


def test_a_shared_display_name_is_allowed() -> None:
    """Two people may share a display name (it is ambiguous, not refused)."""
    policy = parse_policy(
        "reviewers:\n  - {id: a, display_name: Sam Lee}\n  - {id: b, display_name: sam lee}\n",
        source="policy.yaml",
    )
    assert ["a", "b"] == [e.id for e in policy.directory.candidates("SAM LEE")]
    assert policy.reviewer("Sam Lee") is None
