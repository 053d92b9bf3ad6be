"""A local Ray cluster of several nodes on this machine (Ray's own `cluster_utils`), each node
telling itself apart by a custom resource (`node-a`, `node-b`, ...), as the tests' proof of
where a run ran."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# Ray's loopback traps (see MACHINE.md): keep 127.0.0.1 as the nodes' and drivers' address.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
NODE_OPTIONS = {"object_store_memory": 80 * 2**20, "node_ip_address": "127.0.0.1"}


@dataclass
class RayCluster:
    """Nodes by name; `address` is the head's GCS as drivers (spell servers) take it."""

    cluster: object
    nodes: dict[str, object] = field(default_factory=dict)

    @classmethod
    def start(cls, head: dict, **workers: dict) -> RayCluster:
        os.environ.update(RAY_ENV)
        from ray.cluster_utils import Cluster

        cluster = cls(
            Cluster(
                initialize_head=True,
                connect=False,
                head_node_args={**NODE_OPTIONS, "include_dashboard": False, **head},
            )
        )
        cluster.nodes["a"] = cluster.cluster.head_node
        for name, options in workers.items():
            cluster.add(name, **options)
        return cluster

    def add(self, name: str, **options) -> object:
        resources = {f"node-{name}": 1, **options.pop("resources", {})}
        node = self.cluster.add_node(**NODE_OPTIONS, resources=resources, **options)
        self.cluster.wait_for_nodes()
        self.nodes[name] = node
        return node

    def remove(self, name: str) -> None:
        self.cluster.remove_node(self.nodes.pop(name), allow_graceful=False)

    @property
    def address(self) -> str:
        return "127.0.0.1:" + self.cluster.address.rsplit(":", 1)[1]

    def node_named(self, node_id: str) -> str:
        """Which of the nodes (a, b, ...) has this Ray node ID."""
        return next(name for name, node in self.nodes.items() if node.node_id == node_id)

    def env(self) -> dict[str, str]:
        """What a spell server needs to place its runs on this cluster."""
        return {**RAY_ENV, "SPELL_BACKEND": "ray", "RAY_ADDRESS": self.address}

    def shutdown(self) -> None:
        self.cluster.shutdown()
