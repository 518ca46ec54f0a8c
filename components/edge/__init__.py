"""The edge family: what stands in front of the service: the CloudFront distribution, the WAF, the application
load balancer and the weighted DNS cutover from a legacy endpoint.

It builds on the workload family (the load balancer produces the `TargetAttachment` and `RequestCounts` the
service and its scaling declare), the network family and the shared modules. Security stance: each module's
own (internal load balancer behind CloudFront by default, TLS and WAF rules per config).
"""
