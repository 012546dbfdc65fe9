"""The programs that stand in for well-known container images inside lab pods.

An image the lab knows (controlplane/kubelet/image_table.py) runs one of
these in place of the image's own binary, answering on the wire as the real
one does (docs/images.md):

    serve_hostname  registry.k8s.io/serve_hostname: the hostname on 9376
    agnhost         registry.k8s.io/e2e-test-images/agnhost: netexec,
                    serve-hostname, pause, the dns-* and etc-hosts printers
    echoserver      registry.k8s.io/echoserver: the request echoed as text
    hello           gcr.io/google-samples/hello-app and node-hello
    nginx           the real nginx from Debian, in the nginx image's file layout
    missing         what a container whose program the lab lacks prints

The servers share one small selector loop (netloop.py) rather than asyncio:
a pod's process should cost as little memory as the lab can make it.
"""
