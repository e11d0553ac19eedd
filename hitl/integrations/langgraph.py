"""LangGraph and LangChain: hitl decides where the graph pauses, and the graph resumes its own way.

Two pause points, one driver:

- Inside a node, :func:`approval` pauses the graph with LangGraph's ``interrupt()`` and returns
  the reviewer's :class:`~hitl.models.Decision` once the graph is resumed. The node checks the
  decision itself (signature, request id and the digest of the request it asked about), so a
  ``Command(resume=...)`` from anyone else cannot approve anything::

      def refund_node(state: State) -> dict[str, Any]:
          decision = approval("refund", {"order": state["order"], "amount": state["amount"]})
          if not decision.approved:
              return {"result": f"not refunded: {decision.reason}"}
          return {"result": refund(**decision.params)}

- LangChain's ``HumanInTheLoopMiddleware`` (``create_agent(..., middleware=[...])``) pauses
  before the tools in its ``interrupt_on``; :func:`middleware_response` turns hitl decisions into
  its approve / edit / reject answers (the reviewer's reason is the message the model sees).

:func:`run` drives either: it invokes the graph, and while the checkpoint holds hitl
interrupts it submits their requests (ids derived from the thread and the interrupt, so asking
again after a restart is the same request), waits for the decisions and resumes with
``Command(resume={interrupt_id: answer})``. :func:`submit_pending` only submits, for a process
that stops while a human thinks; a later process calls :func:`run` with ``None`` as the input
to wait and resume from the checkpointer (e.g. ``SqliteSaver``).
"""

from __future__ import annotations

from typing import Any, Protocol

from langgraph.config import get_config
from langgraph.types import Command, Interrupt, interrupt

from hitl.client import Client, build_request
from hitl.config import Settings
from hitl.errors import InvalidRequest
from hitl.integrations._common import refusal_text, request_id_for
from hitl.keys import PublicKeys
from hitl.models import ApprovalRequest, Decision
from hitl.signing import canonical_json, request_digest, verify_decision

__all__ = [
    "HITL_KEY",
    "approval",
    "middleware_response",
    "run",
    "submit_pending",
]

HITL_KEY = "hitl_request"
"""The key of :func:`approval`'s interrupt value: the ApprovalRequest as JSON."""


class Graph(Protocol):
    """A compiled LangGraph graph with a checkpointer (``CompiledStateGraph``, ``create_agent``)."""

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any: ...  # noqa: A002 - LangGraph's name
    def get_state(self, config: Any, **kwargs: Any) -> Any: ...


def _node_request(action: str, params: dict[str, Any], fields: dict[str, Any]) -> ApprovalRequest:
    configurable = get_config().get("configurable", {})
    thread = str(configurable.get("thread_id", ""))
    where = str(configurable.get("checkpoint_ns", ""))
    rid = request_id_for("node", thread, where, action, canonical_json(params))
    return build_request(action, params, id=rid, **fields)


def approval(
    action: str, params: dict[str, Any], *, keys: PublicKeys | None = None, **fields: Any
) -> Decision:
    """Pause the graph until a human decides ``action`` with ``params``; the verified decision.

    ``fields`` are the other ApprovalRequest fields (``summary``, ``reasoning``, ``risk``,
    ``agent_id``...). The decision is verified with ``keys`` (default: ``HITL_PUBLIC_KEY``)
    against the request this node built; a resume value that is not that decision raises
    :class:`~hitl.errors.SignatureError`.
    """
    request = _node_request(action, params, fields)
    answer = interrupt({HITL_KEY: request.model_dump(mode="json")})
    decision = Decision.model_validate(answer)
    trusted = keys if keys is not None else Settings.from_env().verify_keys()
    return verify_decision(
        decision, trusted, request_id=request.id, request_digest=request_digest(request)
    )


def _middleware_requests(
    item: Interrupt, thread: str, agent_id: str | None
) -> list[ApprovalRequest]:
    out = []
    for n, action in enumerate(item.value["action_requests"]):
        rid = request_id_for("middleware", thread, item.id, str(n))
        summary = str(action.get("description") or f"{action['name']}")[:500]
        out.append(
            build_request(
                action["name"], dict(action["args"]), id=rid, summary=summary, agent_id=agent_id
            )
        )
    return out


def _requests(item: Interrupt, thread: str, agent_id: str | None) -> list[ApprovalRequest]:
    value = item.value
    if isinstance(value, dict) and HITL_KEY in value:
        return [ApprovalRequest.model_validate(value[HITL_KEY])]
    if isinstance(value, dict) and "action_requests" in value:
        return _middleware_requests(item, thread, agent_id)
    raise InvalidRequest(
        f"interrupt {item.id} is not hitl's (neither approval() nor HumanInTheLoopMiddleware)"
    )


def middleware_response(actions: list[dict[str, Any]], decisions: list[Decision]) -> dict[str, Any]:
    """The ``HITLResponse`` for ``HumanInTheLoopMiddleware``'s ``action_requests``: approve,
    edit (the reviewer's params) or reject (the reviewer's reason is the message the model
    sees), one per action, in order."""
    answers: list[dict[str, Any]] = []
    for action, d in zip(actions, decisions, strict=True):
        if not d.approved:
            answers.append({"type": "reject", "message": refusal_text(d)})
        elif d.modified:
            edited = {"name": action["name"], "args": d.params}
            answers.append({"type": "edit", "edited_action": edited})
        else:
            answers.append({"type": "approve"})
    return {"decisions": answers}


def _pending(graph: Graph, config: Any) -> tuple[Interrupt, ...]:
    return tuple(graph.get_state(config).interrupts)


def submit_pending(graph: Graph, config: Any, client: Client) -> list[str]:
    """Submit the requests of the graph's open hitl interrupts (idempotent); their ids."""
    thread = str(config.get("configurable", {}).get("thread_id", ""))
    ids: list[str] = []
    for item in _pending(graph, config):
        for request in _requests(item, thread, client.agent_id):
            ids.append(client.submit_request(request))
    return ids


def run(
    graph: Graph,
    graph_input: Any,
    config: Any,
    client: Client,
    *,
    timeout: float | None = None,
    max_rounds: int = 100,
) -> Any:
    """Invoke ``graph`` (``graph_input=None`` continues from the checkpoint) and answer each hitl
    interrupt with the reviewers' decisions until the graph finishes; its final output.
    Raises :class:`~hitl.errors.AgentHalted` (the graph stays paused in its checkpoint) while a
    person has paused ``client.agent_id``."""
    thread = str(config.get("configurable", {}).get("thread_id", ""))
    result = graph.invoke(graph_input, config) if graph_input is not None else None
    for _ in range(max_rounds):
        pending = _pending(graph, config)
        if not pending:
            return result if result is not None else graph.get_state(config).values
        client.check_controls()  # a paused agent's graph stays paused (AgentHalted)
        answers: dict[str, Any] = {}
        for item in pending:
            requests = _requests(item, thread, client.agent_id)
            decisions = []
            for request in requests:
                assert request.id is not None
                client.submit_request(request)
                decisions.append(client.wait(request.id, timeout, digest=request_digest(request)))
            if HITL_KEY in item.value:
                answers[item.id] = decisions[0].model_dump(mode="json")
            else:
                answers[item.id] = middleware_response(item.value["action_requests"], decisions)
        result = graph.invoke(Command(resume=answers), config)
    raise InvalidRequest(f"the graph was still interrupted after {max_rounds} rounds")
