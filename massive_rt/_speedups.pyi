"""Types of the compiled accelerator (massive_rt/_speedups.c); see massive_rt.speedups."""

from collections.abc import Callable
from typing import Any

class Builder:
    """Builds ``cls`` events from ``source`` structs, slot to slot."""

    cls: type
    def __init__(
        self,
        cls: type,
        source: type,
        event_type: str,
        fields: tuple[str, ...],
        attributes: tuple[str, ...],
        mark: str | None = None,
    ) -> None: ...
    def __call__(self, item: Any, received_at_ns: int, connection: str) -> Any: ...
    def bind(self, marks: dict[Any, Any]) -> Builder: ...

def build_events(
    items: list[Any], builders: dict[type, Callable[[Any, int, str], Any]], received_at_ns: int, connection: str
) -> list[Any]: ...
def pack_records(
    out: bytearray, received_at_ns: int, connection: int, kind: int, payloads: bytes | list[bytes]
) -> int: ...

class ReadyGet:
    """``get()``'s fast path: pops the next event of ``ready`` in C, else calls ``get``."""

    __wrapped__: Callable[..., Any]
    def __init__(self, ready: Any, get: Callable[..., Any]) -> None: ...
    def __call__(self, timeout: float | None = None) -> Any: ...
