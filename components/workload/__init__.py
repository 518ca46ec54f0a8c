"""The workload family: the ECS cluster, the Fargate service and its task definition, the task's two roles,
secrets, the image repository and build, autoscaling rules and the tracing sidecar.

It builds on the network family and the shared modules. Security stance: each module's own (separate execution
and task roles, inline policies on exact ARNs).
"""
