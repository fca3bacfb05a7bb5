"""Monitoring: the numbers operations watch, beyond what each process counts for itself
(gateway.metrics).

``cluster`` reads the cluster-wide state (outbox backlog and the age of its oldest item, open
breaks, SLA breaches, the last reconciliation run, when each agency was last heard from) from
the database at scrape time, behind a short cache; ``polls`` counts the SFTP result pickups and
mailbox polls as the scheduler runs them. The dashboard in ``docs/grafana/agency-gateway.json``
draws every metric the gateway exports.
"""

from typing import TYPE_CHECKING

from gateway.exports import lazy_exports

if TYPE_CHECKING:
    from gateway.monitoring.cluster import ClusterCollector, ClusterSnapshot, read_cluster
    from gateway.monitoring.polls import MeteredPoller, metered

__all__ = ["ClusterCollector", "ClusterSnapshot", "MeteredPoller", "metered", "read_cluster"]

__getattr__ = lazy_exports(
    __name__,
    {
        "ClusterCollector": "gateway.monitoring.cluster",
        "ClusterSnapshot": "gateway.monitoring.cluster",
        "read_cluster": "gateway.monitoring.cluster",
        "MeteredPoller": "gateway.monitoring.polls",
        "metered": "gateway.monitoring.polls",
    },
)
