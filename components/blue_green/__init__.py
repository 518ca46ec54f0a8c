"""CodeDeploy blue/green deploys for gantry's ECS service, driven from `pulumi up`.

The pieces here are pure builders (AppSpec, traffic-shifting choice, rollback alarms, IAM documents),
the deploy resource's provider logic and the validation hook that CodeDeploy runs against green before
production traffic moves. Security stance: every IAM grant names this service's resources, green is
validated only through a test listener that is never internet-facing, and a deployment that fails or
rolls back fails `pulumi up` without recording its revision as deployed.
"""
