"""The listener at the edge: HTTP/1.1 limits on each connection and TLS, in front of the ASGI app.

`protocol` holds uvicorn's httptools protocol with the edge limits added; `tls` builds the server
TLS context and swaps in a new certificate when its files change; `worker` gives each worker
process its validated configuration.
"""
