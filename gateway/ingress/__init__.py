"""Request decoding, the hot path's front: `proxy.ProxyEndpoint` reads and validates an inference
request (`api`: the endpoints and their fields; `bodies`: JSON and MessagePack; `jsonkeys`: duplicate
keys; `media`: image and audio parts), matches its route (`routing`), runs the pipeline and sends."""
