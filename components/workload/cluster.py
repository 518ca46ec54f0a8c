"""Cluster: the ECS cluster every service of a stack runs in (the API today, the queue worker next).

Container Insights on, both Fargate capacity providers registered so each service chooses its own
strategy. Split out of FargateService with aliases, so a live stack keeps its cluster: the resources
keep their logical names and only change parent. Security stance: nothing here grants or opens
anything; ECS Exec stays off on every service.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

# Where the cluster's resources lived before the split: children of the API's FargateService.
LEGACY_PARENT = ("gantry", "gantry:ecs:FargateService")


class Cluster(pulumi.ComponentResource):
    cluster: aws.ecs.Cluster
    capacity_providers: aws.ecs.ClusterCapacityProviders
    """A service must start after this: a strategy naming an unregistered provider is refused."""
    name: pulumi.Output[str]
    arn: pulumi.Output[str]

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gantry:ecs:Cluster", name, None, opts)
        moved = pulumi.ResourceOptions(
            parent=self,
            aliases=[pulumi.Alias(parent=pulumi.create_urn(LEGACY_PARENT[0], LEGACY_PARENT[1]))],
        )
        self.cluster = aws.ecs.Cluster(
            f"{name}-cluster", settings=[{"name": "containerInsights", "value": "enabled"}], opts=moved
        )
        self.capacity_providers = aws.ecs.ClusterCapacityProviders(
            f"{name}-capacity-providers",
            cluster_name=self.cluster.name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"],
            opts=moved,
        )
        self.name = self.cluster.name
        self.arn = self.cluster.arn
        self.register_outputs({"clusterName": self.name})
