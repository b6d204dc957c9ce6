"""Secrets under failure: a dedicated run at DEBUG log level with distinctive, non-default
credentials for Naver Pay, Qoo10 and Goodsflow, driven through the paths most likely to leak
them — token issuance and re-issuance, expired tokens and keys, credentials the marketplaces
stop accepting (the Goodsflow sandbox even echoes the presented key in its 401 answer), ops
failing permanently into the DLQ and malformed input. No credential value may appear in any
worker log line, any DLQ message, any ``sync.results`` message, or the failed_events /
channel_ops / channel_changes tables. (Every other fault test runs the same scan at its end.)"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from store.carriers import Carrier
from store.domain import Channel
from store.ledger import OpState
from store.models import ChannelOp
from tests.faults.bad_messages import bad_messages
from tests.faults.stack import FaultStack, Seeded
from topics import names
from topics.commands import WaybillRequest
from topics.envelope import new_envelope

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
async def stack(kafka_bootstrap: str, require_pg: str, tmp_path: Path) -> AsyncIterator[FaultStack]:
    st = FaultStack(
        kafka_bootstrap,
        require_pg,
        tmp_path,
        rng_seed=61,
        goodsflow=True,
        env_extra={"LOG_LEVEL": "DEBUG"},
    )
    await st.start()
    try:
        yield st
    finally:
        await st.stop()


def _waybill(s: Seeded) -> Any:
    cmd = WaybillRequest(line_ids=[s.line_id], carrier=Carrier.CJ)
    return new_envelope("waybill.request", s.order_id, Channel(s.channel), cmd)


async def _ops_by_state(stack: FaultStack) -> Counter[tuple[str, str, str]]:
    async with stack.sessions() as s:
        ops = (await s.execute(select(ChannelOp))).scalars()
        return Counter((op.channel, op.action, op.state) for op in ops)


async def test_secrets_never_appear_in_logs_dead_letters_results_or_tables(
    stack: FaultStack, report: Callable[..., Any]
) -> None:
    """No credential leaks: after successful calls, re-authentication, permanent auth failures
    (ops failed and dead-lettered with the marketplaces' error texts) and malformed input, the
    scan of every log line, DLQ, result and table finds none of the four secret values."""
    started = time.monotonic()
    naver, qoo10, goodsflow = (stack.sandboxes[n] for n in ("naverpay", "qoo10", "goodsflow"))
    orders = await stack.seed_orders(600)
    ok, again, refused, waybills = orders[:200], orders[200:300], orders[300:400], orders[400:500]

    # 1: ordinary traffic (token issued with the bcrypt-signed secret, Qoo10 key created)
    await stack.send_commands([stack.command_for(o) for o in ok])
    await stack.send_commands([_waybill(o) for o in waybills if not o.with_invoice])
    await stack.wait_shipped(len(ok), timeout=120)

    # 2: tokens and seller keys expire: the clients re-authenticate with the secrets
    naver.expire_tokens()
    qoo10.expire_keys()
    await stack.send_commands([stack.command_for(o) for o in again])
    await stack.wait_shipped(len(ok) + len(again), timeout=120)

    # 3: the marketplaces stop accepting the credentials: permanent failures, dead letters
    naver.deny_api_group = True
    qoo10.revoke_keys(new_password="changed-in-qsm")
    goodsflow.api_key = "rotated-by-goodsflow"
    await stack.send_commands([stack.command_for(o) for o in refused])
    await stack.send_commands([_waybill(o) for o in waybills if o.with_invoice])

    # 4: malformed input on every consumed topic
    for topic in names.CONSUMED_TOPICS:
        await stack.produce(topic, [m for _, m in bad_messages(stack.rng, topic, 30)])

    expected_ops = len(ok) + len(again) + len(refused) + len(waybills)

    async def refused_settled() -> bool:
        states = await _ops_by_state(stack)
        open_ = sum(n for (_, _, st), n in states.items() if st in ("pending", "sent", "retry"))
        return open_ == 0 and sum(states.values()) >= expected_ops

    await stack.wait_until(refused_settled, "auth failures to settle", 180)
    states = await _ops_by_state(stack)
    dead = await stack.dead_letters()
    failed_ops = sum(n for (_, _, st), n in states.items() if st == OpState.FAILED.value)
    op_letters = sum(1 for d in dead[names.OMS_COMMANDS] if d["reason"].startswith("op_failed"))
    log = b"".join(w.log_path.read_bytes() for w in stack.workers)
    assert failed_ops == len(refused) + len(waybills) // 2, states
    assert op_letters >= 1, "no op reached the DLQ: the scan would not cover error texts"
    assert b"DEBUG" in log and b"401" in log, "the run did not log at DEBUG or meet a 401"
    assert naver.ledger.count("token_issued") >= 2, "no token re-issue happened"
    letters = json.dumps(dead[names.OMS_COMMANDS])
    assert "invalid API key" in letters, "Goodsflow's key-echoing 401 was not met"

    planted = b"worker said: " + stack.secrets.qoo10_password.encode()
    with pytest.raises(AssertionError, match="qoo10_password in control"):
        await stack.scan_secrets(control=planted)

    scanned = await stack.scan_secrets()
    report(
        commands=len(ok) + len(again) + len(refused) + len(waybills),
        bad_messages=90,
        ops_by_state={f"{c}/{a}/{s}": n for (c, a, s), n in sorted(states.items())},
        naver_tokens_issued=naver.ledger.count("token_issued"),
        dead_letters={t: len(v) for t, v in dead.items()},
        bytes_scanned=scanned,
        secrets_found=0,
        wall_seconds=round(time.monotonic() - started, 1),
    )
