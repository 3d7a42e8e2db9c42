"""The master: telemetry in, devices, features, self-learning models, breaches, policy, actions out.

Entry points: :func:`master.service.serve` (``vigil master`` / ``vigil up``) and
:class:`master.offline.OfflineMaster` (``vigil analyze``). The stages, in the data's order:
``ingest`` -> ``entities`` -> ``features`` -> ``models`` -> ``breaches`` -> ``policy`` -> ``respond``,
with state in ``store``.
"""
