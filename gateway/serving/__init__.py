"""The listener at the edge: HTTP/1.1 limits on each connection and TLS, in front of the ASGI app.

`server` runs uvicorn (one or more worker processes; `supervisor` forwards SIGHUP to them so each
reloads its policy); `protocol` holds uvicorn's httptools protocol with the edge limits added; `tls`
builds the server TLS context and swaps in a new certificate when its files change; `loop` makes the
event loop; `feature` is the `server:` section as a feature (its keys and how a reload treats them).
"""
