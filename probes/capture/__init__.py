"""`svclab capture`: tcpdump inside chosen lab hosts, one pcap per host.

    probe    the Capture context manager: start, stop, count, write capture.json
    meta     what capture.json says about each captured host (pure data and parsing)
"""
