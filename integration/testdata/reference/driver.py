"""Interop driver for integration/reference_test.go.

Runs participants of the Python reference implementation of AAuth
(github.com/christian-posta/aauth-python-library, commit 6ac7a05; imported from
../shared/reference/aauth-python-library beside the checkout, or $AAUTH_REFERENCE_DIR)
on loopback ports chosen by the OS, and talks to the Go test as JSON lines: one object
per line on stdout (events), one per line on stdin (commands). Everything else the
reference prints goes to stderr.

Modes:

  driver.py agent
      One reference Agent (its metadata and JWKS served on 127.0.0.1). Events:
        {"event": "ready", "agent": "<agent id>"}
        {"event": "interaction", "url": "<interaction URL>"}   (then waits for a command)
        {"event": "result", "status": N, "body": "...", "aauth": "<AAuth header>",
         "auth_token": bool, "clarifications": [{"question": "...", "answer": "..."}],
         "exchanges": [{"method": "...", "url": "...", "status": N}]}
      Commands:
        {"op": "fetch", "url": "...", "scheme": "hwk" | "jwks_uri"}
        {"op": "continue"}   (the person finished at the interaction URL)

  driver.py servers
      Reference auth servers and resources, each resource sending agents to its own auth
      server: "direct" (policy: allow), "consent" (asks the person) and "clarify" (asks
      the person and queues one clarification question). Event:
        {"event": "ready", "resources": {name: id}, "auth_servers": {name: id}}
      Command {"op": "clarifications", "name": "clarify"} answers
        {"event": "clarifications", "answers": ["..."]}: the clarification answers that
        auth server holds for requests still pending. Runs until stdin is closed.

  driver.py chain
      Call chaining (draft-hardt-aauth §4.5.5 agent as audience, §4.5.8 call chaining):
      starts nothing until told; every participant is named by the test. Event
      {"event": "ready"}, then one event per command:
        {"op": "auth_server", "name": n, "consent": bool, "trust": ["<issuer>", ...]}
        {"op": "resource", "name": n, "auth_server": "<id>", "txn": bool,
         "downstream": "<URL>"}                      (downstream: for /data-chain-auth)
        {"op": "agent", "name": n}
            → {"event": "started", "name": n, "id": "<id>"}
        {"op": "fetch", "agent": n, "url": "...", "scheme": "hwk" | "jwks_uri"}
            Agent.request_resource, with the agent's stored token cleared first.
        {"op": "self", "agent": n, "auth_server": "<id>", "scope": "..."}
            Agent.request_self_authorization (phase 5).
        {"op": "downstream", "resource": n, "url": "...", "upstream_token": "..."}
            Resource.call_downstream_resource (phase 7, form (ii) exchange).
            → {"event": "result", "status": N, "body": "...", "aauth": "...",
               "token": "<the agent's auth token, or the self-access token>",
               "exchanges": [...]}
        {"op": "continue"}  answers an {"event": "interaction", "url": ...} as in agent mode.
      A participant that raises is reported as {"event": "error", "error": "..."}.

Besides the participants' constructors and Agent.request_resource, the driver replaces
the reference agent's user simulator (the person is the Go test), clears the agent's
stored auth token between flows, records the HTTP exchanges the agent makes, and reads an
auth server's pending requests to report clarification answers. The person at the
reference's own consent pages is played by the Go test over HTTP.
"""

import asyncio
import json
import os
import socket
import sys
import threading


def reference_dir():
    d = os.environ.get("AAUTH_REFERENCE_DIR")
    if d:
        return d
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", "..", ".."))
    return os.path.join(os.path.dirname(root), "shared", "reference", "aauth-python-library")


sys.path.insert(0, reference_dir())

import uvicorn  # noqa: E402

_stdout = sys.stdout
sys.stdout = sys.stderr  # the reference's own prints must not mix with the events


def emit(obj):
    _stdout.write(json.dumps(obj) + "\n")
    _stdout.flush()


def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    return s, "http://127.0.0.1:%d" % s.getsockname()[1]


def new_server(app):
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    server.install_signal_handlers = lambda: None
    return server


def serve_in_thread(app, sock):
    # Each participant gets its own thread and event loop: the reference's auth server
    # fetches JWKS with blocking calls from its request handlers, which would stall a
    # resource sharing its loop.
    server = new_server(app)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    return server


async def read_command(loop):
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if not line:
        return None
    line = line.strip()
    return json.loads(line) if line else {}


def record_exchanges(httpx, log):
    """Wraps httpx's send so every request the agent makes is listed with its status (and,
    for an error, the start of the answer)."""
    sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

    def note(request, response):
        entry = {"method": request.method, "url": str(request.url), "status": response.status_code}
        if response.status_code >= 400:
            try:  # an error answer's body says why (it carries no token)
                entry["error"] = response.text[:300]
            except Exception:  # a streamed body not read yet
                pass
        log.append(entry)

    def send(self, request, *a, **kw):
        response = sync_send(self, request, *a, **kw)
        note(request, response)
        return response

    async def asend(self, request, *a, **kw):
        response = await async_send(self, request, *a, **kw)
        note(request, response)
        return response

    httpx.Client.send, httpx.AsyncClient.send = send, asend


async def agent_mode():
    from participants.agent import Agent
    import participants.user_simulator as user_simulator

    import httpx

    loop = asyncio.get_running_loop()
    exchanges = []
    record_exchanges(httpx, exchanges)
    sock, agent_id = listener()
    agent = Agent(agent_id, port=0, use_user_simulator=True, clarification_supported=True)

    async def person(self, interaction_url, auth_server_base=None):
        # The reference agent hands the interaction URL to its "user"; here the user is
        # the Go test, which answers with {"op": "continue"} when it is done.
        emit({"event": "interaction", "url": interaction_url})
        cmd = await read_command(loop)
        return bool(cmd) and cmd.get("op") == "continue"

    user_simulator.UserSimulator.complete_interaction = person
    server = serve_in_thread(agent.app, sock)
    emit({"event": "ready", "agent": agent_id})

    while True:
        cmd = await read_command(loop)
        if cmd is None:
            break
        if cmd.get("op") != "fetch":
            emit({"event": "error", "error": "unexpected command %r" % (cmd,)})
            continue
        # A fresh flow: the reference agent reuses any auth token it holds for every
        # later request, whatever the resource.
        agent.auth_token = None
        agent.clarification_history = []
        del exchanges[:]
        try:
            resp = await agent.request_resource(resource_url=cmd["url"], sig_scheme=cmd.get("scheme", "hwk"))
            emit({
                "event": "result",
                "status": resp.status_code,
                "body": resp.text,
                "aauth": resp.headers.get("aauth", ""),
                "auth_token": bool(agent.auth_token),
                "clarifications": agent.clarification_history,
                "exchanges": list(exchanges),
            })
        except Exception as e:  # reported to the test, which fails with it
            emit({"event": "error", "error": "%s: %s" % (type(e).__name__, e)})
    server.should_exit = True


async def servers_mode():
    from participants.auth_server import AuthServer
    from participants.resource import Resource

    loop = asyncio.get_running_loop()
    running, resources, auth_servers, servers = [], {}, {}, {}
    setups = {
        "direct": dict(require_user_consent=False),
        "consent": dict(require_user_consent=True),
        "clarify": dict(require_user_consent=True, clarification_questions=["Which report do you need?"]),
    }
    for name, opts in setups.items():
        as_sock, as_id = listener()
        rs_sock, rs_id = listener()
        auth = AuthServer(as_id, port=0, **opts)
        res = Resource(rs_id, port=0, auth_server=as_id)
        running.append(serve_in_thread(auth.app, as_sock))
        running.append(serve_in_thread(res.app, rs_sock))
        resources[name], auth_servers[name], servers[name] = rs_id, as_id, auth
    emit({"event": "ready", "resources": resources, "auth_servers": auth_servers})
    while True:
        cmd = await read_command(loop)
        if cmd is None:
            break
        if cmd.get("op") == "clarifications":
            # The answers an auth server has received, over all its pending requests.
            answers = [h.get("response") for p in list(servers[cmd["name"]].pending_requests.values())
                       for h in p.get("clarification_history", [])]
            emit({"event": "clarifications", "answers": answers})
    for server in running:
        server.should_exit = True


async def start_participant(cmd, participants, running):
    """Starts the auth server, resource or agent a chain-mode command names."""
    from participants.agent import Agent
    from participants.auth_server import AuthServer
    from participants.resource import Resource

    sock, pid = listener()
    op = cmd["op"]
    if op == "auth_server":
        p = AuthServer(pid, port=0, require_user_consent=bool(cmd.get("consent")),
                       trusted_auth_servers=list(cmd.get("trust") or []))
    elif op == "resource":
        p = Resource(pid, port=0, auth_server=cmd["auth_server"], enable_txn=bool(cmd.get("txn")),
                     downstream_resource_url=cmd.get("downstream"))
    else:
        p = Agent(pid, port=0, use_user_simulator=True, clarification_supported=False)
    running.append(serve_in_thread(p.app, sock))
    participants[cmd["name"]] = p
    return {"event": "started", "name": cmd["name"], "id": pid}


async def run_chain_command(cmd, participants, exchanges):
    """Runs one flow of chain mode and returns its result event."""
    op = cmd.get("op")
    del exchanges[:]
    token, resp = None, None
    if op == "fetch":
        agent = participants[cmd["agent"]]
        agent.auth_token = None  # a fresh flow: the agent reuses any token it holds
        resp = await agent.request_resource(resource_url=cmd["url"], sig_scheme=cmd.get("scheme", "jwks_uri"))
        token = agent.auth_token
    elif op == "self":
        agent = participants[cmd["agent"]]
        agent.auth_token = None
        token = await agent.request_self_authorization(scope=cmd["scope"], auth_server=cmd["auth_server"])
    elif op == "downstream":
        res = participants[cmd["resource"]]
        resp = await res.call_downstream_resource(downstream_url=cmd["url"], method=cmd.get("method", "GET"),
                                                  upstream_auth_token=cmd["upstream_token"])
    else:
        return {"event": "error", "error": "unexpected command %r" % (cmd,)}
    return {
        "event": "result",
        "status": resp.status_code if resp is not None else 0,
        "body": resp.text if resp is not None else "",
        "aauth": resp.headers.get("aauth", "") if resp is not None else "",
        "token": token or "",
        "exchanges": list(exchanges),
    }


async def chain_mode():
    import participants.user_simulator as user_simulator

    import httpx

    loop = asyncio.get_running_loop()
    exchanges, participants, running = [], {}, []
    record_exchanges(httpx, exchanges)

    async def person(self, interaction_url, auth_server_base=None):
        emit({"event": "interaction", "url": interaction_url})
        cmd = await read_command(loop)
        return bool(cmd) and cmd.get("op") == "continue"

    user_simulator.UserSimulator.complete_interaction = person
    emit({"event": "ready"})
    while True:
        cmd = await read_command(loop)
        if cmd is None:
            break
        try:
            if cmd.get("op") in ("auth_server", "resource", "agent"):
                emit(await start_participant(cmd, participants, running))
            else:
                emit(await run_chain_command(cmd, participants, exchanges))
        except Exception as e:  # reported to the test, which fails with it
            import traceback
            traceback.print_exc()
            emit({"event": "error", "error": "%s: %s" % (type(e).__name__, e)})
    for server in running:
        server.should_exit = True


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "agent":
        asyncio.run(agent_mode())
    elif mode == "servers":
        asyncio.run(servers_mode())
    elif mode == "chain":
        asyncio.run(chain_mode())
    else:
        sys.stderr.write("usage: driver.py agent|servers|chain\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
