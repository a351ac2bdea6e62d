"""Running the Lua scripts of :mod:`._redis_scripts`: once, synchronously, or through the
running event loop's shared pipeline of one script.

A script that changes state is sent once: only ``NOSCRIPT`` (Redis does not know it, so it
did not run) sends it again, after loading it. Anything else whose outcome is unknown fails
closed (``StoreUnavailable``). Used by the key store and by the rate limiter alike.
"""

from __future__ import annotations

import functools
from typing import Any

from redis.exceptions import NoScriptError

from ._errors import StoreUnavailable
from ._redis_clients import RedisClients
from ._redis_pipeline import Merging, ScriptPipeline
from ._stats import StoreStats

__all__ = ["loop_pipeline", "run_script"]


def _evalsha(client: Any, *, sha: str, keys: list[str], args: list[Any]) -> Any:
    return client.evalsha(sha, len(keys), *keys, *args)


def run_script(clients: RedisClients, name: str, keys: list[str], args: list[Any]) -> Any:
    """Run script ``name`` once (state-changing: never retried, except after NOSCRIPT,
    which means it did not run)."""
    for attempt in (1, 2):
        sha = clients.sha(name) if attempt == 1 else clients.load_script(name)
        try:
            return clients.write(functools.partial(_evalsha, sha=sha, keys=keys, args=args))
        except StoreUnavailable as exc:
            if attempt == 1 and isinstance(exc.__cause__, NoScriptError):
                continue
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def loop_pipeline(
    clients: RedisClients,
    name: str,
    stats: StoreStats,
    operation: str,
    merging: Merging | None = None,
) -> ScriptPipeline:
    """The running event loop's pipeline of script ``name`` (made on first use); its failures
    count under ``operation``."""
    state = clients.loop_state()
    pipeline: ScriptPipeline | None = state.batchers.get(name)
    if pipeline is None:
        pipeline = ScriptPipeline(clients, state, name, merging, stats, operation)
        state.batchers[name] = pipeline
    return pipeline
