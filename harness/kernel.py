"""Run code in a user's notebook server as a person would from a notebook cell: a real kernel
started through the Jupyter server's REST API, code sent over its websocket (the Jupyter
messaging protocol), the printed output read back."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp


async def _execute(server_url: str, token: str, code: str, timeout: float) -> str:
    headers = {"Authorization": f"token {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{server_url}/api/kernels", json={"name": "python3"}) as created:
            created.raise_for_status()
            kernel = (await created.json())["id"]
        try:
            ws_url = server_url.replace("http", "ws", 1) + f"/api/kernels/{kernel}/channels"
            async with http.ws_connect(ws_url, heartbeat=30) as socket:
                msg_id = uuid.uuid4().hex
                await socket.send_str(json.dumps(_request(msg_id, code)))
                output: list[str] = []
                async with asyncio.timeout(timeout):
                    async for message in socket:
                        reply = json.loads(message.data)
                        if reply.get("parent_header", {}).get("msg_id") != msg_id:
                            continue
                        kind, content = reply["msg_type"], reply["content"]
                        if kind == "stream":
                            output.append(content["text"])
                        elif kind == "error":
                            output.append(f"{content['ename']}: {content['evalue']}\n")
                        elif kind == "status" and content["execution_state"] == "idle":
                            break
                return "".join(output)
        finally:
            async with http.delete(f"{server_url}/api/kernels/{kernel}"):
                pass


def _request(msg_id: str, code: str) -> dict[str, Any]:
    return {"header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                       "msg_type": "execute_request", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": False,
                        "user_expressions": {}, "allow_stdin": False,
                        "stop_on_error": True}}


def run_in_kernel(server_url: str, token: str, code: str, timeout: float = 60) -> str:
    """What ``code`` prints in a fresh kernel of the server at ``server_url``."""
    return asyncio.run(_execute(server_url.rstrip("/"), token, code, timeout))
