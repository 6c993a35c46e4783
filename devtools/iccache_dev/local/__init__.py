"""Start and stop real local services (Redis with search, llama.cpp servers).

Used by the test fixtures and by ``iccache demo``; nothing here runs in a cluster.
"""
