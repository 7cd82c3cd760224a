"""The controller client on its own, against a real ROUTER on loopback: replies matched by id,
late and out of order; bad replies counted; a resend keeps its id."""

from __future__ import annotations

import asyncio

import zmq
import zmq.asyncio

from tests.conftest import free_port
from tipd.controller import ControllerClient
from tipd.protocol import Command, Reply, decode_command, encode_reply


def pulse() -> Command:
    return Command(microscope="stm1", action="pulse", params={"bias_V": 2.5, "width_s": 0.1})


def run(scenario) -> object:  # type: ignore[no-untyped-def]
    return asyncio.run(scenario())


async def router_and_client(
    timeout_s: float = 1.0, retries: int = 2
) -> tuple[zmq.asyncio.Context, zmq.asyncio.Socket, ControllerClient]:
    ctx = zmq.asyncio.Context()
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(endpoint)
    client = ControllerClient(ctx, endpoint, timeout_s, retries)
    client.start()
    await asyncio.sleep(0.2)  # connected
    return ctx, router, client


async def receive(router: zmq.asyncio.Socket) -> tuple[bytes, Command]:
    identity, *parts = await router.recv_multipart()
    return identity, decode_command(parts)


def answer(command: Command, status: str = "done") -> list[bytes]:
    return encode_reply(Reply(id=command.id, status=status, detail=status, t_done=1.0))  # type: ignore[arg-type]


def test_replies_out_of_order_reach_their_own_commands() -> None:
    async def scenario() -> None:
        ctx, router, client = await router_and_client()
        a, b = pulse(), pulse()
        ta = asyncio.create_task(client.execute(a))
        tb = asyncio.create_task(client.execute(b))
        got = [await receive(router), await receive(router)]
        assert {c.id for _, c in got} == {a.id, b.id}
        by_id = {c.id: (ident, c) for ident, c in got}
        await router.send_multipart([by_id[b.id][0], *answer(b, "rejected")])  # b first
        await router.send_multipart([by_id[a.id][0], *answer(a, "done")])
        (ra, na), (rb, nb) = await ta, await tb
        assert (ra.id, ra.status, na) == (a.id, "done", 1)
        assert (rb.id, rb.status, nb) == (b.id, "rejected", 1)
        client.close()
        router.close()
        ctx.term()

    run(scenario)


def test_a_late_reply_is_taken_after_a_resend_of_the_same_id() -> None:
    async def scenario() -> None:
        ctx, router, client = await router_and_client(timeout_s=0.3, retries=3)
        c = pulse()
        task = asyncio.create_task(client.execute(c))
        ident, first = await receive(router)
        _, again = await receive(router)  # no answer in 0.3 s: sent again, same id
        assert first.id == again.id == c.id and first == again
        await router.send_multipart([ident, *answer(c)])  # the answer to the first try, late
        reply, tries = await task
        assert reply.status == "done" and tries == 2
        client.close()
        router.close()
        ctx.term()

    run(scenario)


def test_bad_replies_and_replies_to_nobody_are_counted_and_ignored() -> None:
    async def scenario() -> None:
        ctx, router, client = await router_and_client(timeout_s=1.0)
        c = pulse()
        task = asyncio.create_task(client.execute(c))
        ident, _ = await receive(router)
        await router.send_multipart([ident, b"{not json"])
        await router.send_multipart([ident, b'{"v":1,"id":"x","status":"maybe","t_done":1}'])
        await router.send_multipart([ident, *answer(pulse())])  # another id: nobody waits
        await router.send_multipart([ident, *answer(c)])
        reply, tries = await task
        assert reply.id == c.id and reply.status == "done" and tries == 1
        assert client.bad_replies == 2
        client.close()
        router.close()
        ctx.term()

    run(scenario)


def test_no_reply_at_all_is_a_failed_reply_after_every_try() -> None:
    async def scenario() -> None:
        ctx, router, client = await router_and_client(timeout_s=0.2, retries=2)
        c = pulse()
        task = asyncio.create_task(client.execute(c))
        ids = [(await receive(router))[1].id for _ in range(3)]
        reply, tries = await task
        assert ids == [c.id] * 3 and tries == 3
        assert reply.status == "failed" and "no reply" in reply.detail and "3 tries" in reply.detail
        client.close()
        router.close()
        ctx.term()

    run(scenario)
