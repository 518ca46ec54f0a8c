"""The network family: the VPC and its flow logs, security groups (and `allow`, the one way a rule is written),
and the interface and gateway VPC endpoints.

It builds on the shared modules and settings only. Security stance: each module's own (private subnets for
tasks, rules written through `allow`, endpoints per environment).
"""
