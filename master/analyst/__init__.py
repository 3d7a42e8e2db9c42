"""The analyst: model breaches become incidents (grouped per device over time and across devices their
connections link), told with ATT&CK tactics, kill-chain phases, a timeline and a summary written from the
evidence numbers."""
