"""Wire clients: the only place that knows what each provider's JSON looks like."""

from actors.clients.base import Completion, Message, Result
from actors.clients.registry import CLIENTS, make_client
from actors.clients.wire import WireClient

__all__ = ["CLIENTS", "Completion", "Message", "Result", "WireClient", "make_client"]
