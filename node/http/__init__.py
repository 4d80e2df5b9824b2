"""sierradb.node.http: the node's HTTP port (inspector UI, JSON API, live feed, /metrics,
health checks). Imported only when the HTTP port is on."""

from .server import HttpServer, bind_http_socket

__all__ = ["HttpServer", "bind_http_socket"]
