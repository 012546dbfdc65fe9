"""The pods' streaming subresources: exec, attach, port-forward and logs.

Where a real API server proxies these to the pod's kubelet, svclab's serves
them itself and reaches the pod through ``base.cri.PodStreams`` (the lab's
node side, or a fake in tests), on the wire protocols kubectl 1.37 and the
official Python client speak: WebSocket channel protocols (v5 down to the
unversioned ones, base64 variants), SPDY/3.1 (``controlplane.api.spdy``)
plain or tunnelled in WebSocket, and chunked text for logs.

    routes      from request to Upgrade / ByteStream; every refusal before the 101
    target      query parameters and the pod/container checks, with the API server's texts
    responses   the HTTP side: chunked text, 101 and the session on the raw connection
    transport   Duplex: the upgraded TLS connection, read and written from several threads
    websocket   RFC 6455 over a Duplex (wsproto): handshake, whole messages, closing
    channels    the channel protocols as data: framing, the error channel's Status, resizes
    exec        Relay (an ExecSession's descriptors <-> the client) and exec over WebSocket
    spdy_exec   exec and attach over SPDY streams
    portforward forwarded connections over SPDY streams or v4 channels
    logs        CRI log files rendered and followed as the kubelet does
"""
