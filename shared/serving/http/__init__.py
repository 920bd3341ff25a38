"""The edge's own HTTP/1.1 server: an asyncio Protocol on httptools, with no ASGI cycle on the hot route.

``server`` (``serve``, ``EdgeServer``, the connection cap) -> ``connection`` (one client: the Protocol, the
in-order dispatch, deadlines) built from ``message`` (reading a request: parser callbacks and their
limits), ``flow_control`` (fairness between connections), ``writer`` (answers, lingering close) and
``asgi_bridge`` (everything off the hot route); ``phase`` is what a connection is doing, ``limits`` the
bounds on what one client can make it do.
"""
