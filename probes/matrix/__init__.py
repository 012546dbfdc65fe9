"""`svclab probe matrix`: every source against every Service entry, expected vs seen.

    probe    run the matrix in a lab: build the cells, probe them, compare
    expect   the cells and what each should show, from Service semantics (pure)
"""
