"""The channel between actors: batched calls over Ray, a Unix-socket fast path on one
node, streaming calls, and the router <-> provider messages.

Module map:

    channel.py         Batched calls between actors: many logical calls ride on few Ray calls
    channel_server.py  The callee's side of a channel (actors/rpc/channel.py): the mixin an
                       actor inherits so its `_chan_handle` is reachable by batched Ray calls
                       (`chan_submit` + a parked `chan_collect`), one plain call (`chan_one`), a
                       streaming call (`chan_stream`), and its Unix socket on this node
                       (`chan_endpoint`, actors/rpc/localsock.py)
    chanstream.py      The caller side of a streaming channel call (actors/rpc/channel.py,
                       `ChannelClient.stream`)
    localsock.py       Same-node fast path for channels: batched, framed pickles over a Unix
                       socket
    messages.py        Messages between the router and provider actors (the hot path: keep them
                       compact)
"""
