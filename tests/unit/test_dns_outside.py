"""The emulated public DNS: answers its records, NXDOMAIN for everything else
(nothing is forwarded out of the lab), and picks up changes to its file."""
from __future__ import annotations

import json
import os
import time

import dns.message
import dns.query
import dns.rcode

from agents.dns.outside import RecordsFile
from agents.dns.server import DnsServer


def ask(port: int, name: str):
    return dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)


def test_answers_its_records_and_nothing_else(tmp_path):
    path = tmp_path / "records.json"
    path.write_text(json.dumps({"db.example.com": ["203.0.113.50"]}))
    records = RecordsFile(str(path))
    with DnsServer("127.0.0.1", 0, records) as server:
        reply = ask(server.port, "DB.example.com")
        assert [r.to_text() for r in reply.answer[0]] == ["203.0.113.50"]
        assert ask(server.port, "www.google.com").rcode() == dns.rcode.NXDOMAIN
        assert ask(server.port, "nope.example.com").rcode() == dns.rcode.NXDOMAIN
        # An ELB name added while running is answered after the reload.
        path.write_text(json.dumps({"db.example.com": ["203.0.113.50"],
                                    "a1b2-1.us-east-1.elb.amazonaws.com": ["203.0.113.10"]}))
        os.utime(path, (time.time() + 5, time.time() + 5))
        assert records.reload_if_changed()
        reply = ask(server.port, "a1b2-1.us-east-1.elb.amazonaws.com")
        assert [r.to_text() for r in reply.answer[0]] == ["203.0.113.10"]


def test_a_broken_file_keeps_the_previous_zone(tmp_path, capsys):
    path = tmp_path / "records.json"
    path.write_text(json.dumps({"db.example.com": ["203.0.113.50"]}))
    records = RecordsFile(str(path))
    path.write_text("{not json")
    os.utime(path, (time.time() + 5, time.time() + 5))
    assert not records.reload_if_changed()
    assert "keeping the previous zone" in capsys.readouterr().err
    assert "db.example.com." in records.zone.records
