"""What charging leaves for others to read, after each batch is durable:
usage records (`usage.py`, their JSON lines written by a compiled kernel in
`usage_lines.py`, docs/usage.md), sponsor settlement computed from them
(`settlement.py`, docs/sponsors.md) and threshold notifications
(`notify.py`). Read from the journal and the rules; nothing in the
charging path below (gy, engine, rules, store) imports this package."""
