"""The `svclab` command line: the top layer, imported by nothing.

    cli              parse, dispatch, and the one error boundary
    probe_commands   `probe reach|spread|matrix|dns`, `trace`, `capture`
"""
