"""Media parts in chat requests: images and audio as raw MessagePack bytes or OpenAI's JSON parts.

`config`: per-route limits (`routes[].media`) and pool capabilities (`pools[].image_models`,
`pools[].audio_models`). `sniff`: what the bytes really are. `parts`: find, check and convert the
parts of one request. `gate`: the per-request step the proxy runs after routing.
"""
