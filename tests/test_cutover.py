"""The weighted DNS cutover off a legacy endpoint: the whole program with `migration.cutover` (two weighted
CNAMEs with the configured weights, low TTL, health checks, no alias beside them, the state exported for
the next `up`), the rules that need the stack's previous state, read back through readStackOutputs, and
the takeover of the `legacy` record the README has the user create by hand (against moto's Route 53)."""

from __future__ import annotations

import json

import boto3
import pulumi
import pytest
from botocore.exceptions import ClientError

from components.edge.cutover import refuse_own_edge, weights
from components.settings import ConfigError, load_settings
from components.settings.edge import DomainSettings
from components.settings.migration import CutoverSettings, PreviousCutover, cutover_problems
from tests.harness import HOSTED_ZONES, ROOT, Graph, run_program, stack_config, with_test_secrets

[ZONE_ID] = HOSTED_ZONES
HOSTNAME = "embed.acme.io"
LEGACY = "embed-prod.eu-west-1.elasticbeanstalk.com"
DOMAIN = {"hostedZoneId": ZONE_ID, "hostname": HOSTNAME}
RECORD = "aws:route53/record:Record"
HEALTH = "aws:route53/healthCheck:HealthCheck"


def run(cutover: dict | None, previous: dict | None = None, stack: str = "dev") -> Graph:
    config, secret_keys = with_test_secrets(stack_config(stack))
    config["gantry:domain"] = DOMAIN
    if cutover is not None:
        config["gantry:migration"] = {"cutover": cutover}
    graph = Graph(previous_outputs={"migrationCutover": previous} if previous else {})
    return run_program(stack, config, secret_keys, graph)


def hostname_records(g: Graph):
    return [r for r in g.of_type(RECORD) if r.inputs["name"] == HOSTNAME]


def edge_target(g: Graph) -> str:
    """The committed stacks' edge is CloudFront: gantry's record points at the distribution's name."""
    return g.one("aws:cloudfront/distribution:Distribution").outputs["domainName"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_two_weighted_cnames_share_the_hostname_with_the_configured_weights(stack):
    g = run({"legacyTarget": LEGACY, "gantryWeight": 10}, stack=stack)
    records = {r.inputs["setIdentifier"]: r.inputs for r in hostname_records(g)}
    target = edge_target(g)
    assert set(records) == {"legacy", "gantry"}
    assert records["legacy"]["records"] == [LEGACY]
    assert records["gantry"]["records"] == [target]
    assert records["legacy"]["weightedRoutingPolicies"] == [{"weight": 90}]
    assert records["gantry"]["weightedRoutingPolicies"] == [{"weight": 10}]
    for record in records.values():
        assert record["type"] == "CNAME" and record["zoneId"] == ZONE_ID
        assert record["ttl"] == 60
    # A CNAME cannot sit beside the alias: gantry's own records are not created during a cutover.
    assert [r.name for r in g.of_type(RECORD) if "alias" in r.name] == []
    # The certificate is still validated (its record has another name), and the distribution serves the name.
    assert all(r.inputs["name"] != HOSTNAME for r in g.of_type(RECORD) if "validation" in r.name)
    assert g.one("aws:cloudfront/distribution:Distribution").inputs["aliases"] == [HOSTNAME]
    assert g.exports["migrationCutover"] == {
        "legacyTarget": LEGACY,
        "gantryWeight": 10,
        "gantryTarget": target,
        "legacyRetired": False,
    }


def test_gantry_is_health_checked_over_https_on_its_edge_and_legacy_only_when_asked():
    g = run({"legacyTarget": LEGACY, "gantryWeight": 50, "ttlSeconds": 30})
    [check] = g.of_type(HEALTH)
    assert check.inputs["type"] == "HTTPS" and check.inputs["port"] == 443
    assert check.inputs["fqdn"] == edge_target(g) and check.inputs["resourcePath"] == "/health"
    records = {r.inputs["setIdentifier"]: r.inputs for r in hostname_records(g)}
    assert records["gantry"]["healthCheckId"] == check.outputs["id"]
    assert "healthCheckId" not in records["legacy"]
    assert {r["ttl"] for r in records.values()} == {30}

    g = run({"legacyTarget": LEGACY, "gantryWeight": 50, "legacyHealthPath": "/status", "gantryHealthCheck": False})
    [check] = g.of_type(HEALTH)
    assert check.inputs["fqdn"] == LEGACY and check.inputs["resourcePath"] == "/status"
    records = {r.inputs["setIdentifier"]: r.inputs for r in hostname_records(g)}
    assert records["legacy"]["healthCheckId"] == check.outputs["id"]
    assert "healthCheckId" not in records["gantry"]


def test_without_a_cutover_the_alias_owns_the_hostname():
    g = run(None)
    records = hostname_records(g)
    assert {(r.name, r.inputs["type"]) for r in records} == {
        ("gantry-edge-alias-a", "A"),
        ("gantry-edge-alias-aaaa", "AAAA"),
    }
    assert g.of_type(HEALTH) == []
    assert g.exports["migrationCutover"] is None


def test_retiring_legacy_after_a_hold_at_100_keeps_only_gantrys_record():
    held = {"legacyTarget": LEGACY, "gantryWeight": 100, "gantryTarget": "x.elb.amazonaws.com"}
    g = run({"legacyTarget": LEGACY, "gantryWeight": 100, "retireLegacy": True}, previous=held)
    [record] = hostname_records(g)
    assert record.inputs["setIdentifier"] == "gantry" and record.inputs["weightedRoutingPolicies"] == [{"weight": 100}]
    assert g.exports["migrationCutover"]["legacyRetired"] is True


def refusal(cutover: dict | None, previous: dict | None = None) -> str:
    with pytest.raises(pulumi.RunError) as err:
        run(cutover, previous)
    return str(err.value)


def test_removing_the_cutover_while_legacy_carries_traffic_is_refused_before_anything_exists():
    message = refusal(None, previous={"legacyTarget": LEGACY, "gantryWeight": 50})
    assert "gantry:migration.cutover: was removed" in message and "50 %" in message


def test_retiring_legacy_in_the_same_up_that_reaches_100_is_refused():
    message = refusal(
        {"legacyTarget": LEGACY, "gantryWeight": 100, "retireLegacy": True},
        previous={"legacyTarget": LEGACY, "gantryWeight": 50},
    )
    assert "gantry:migration.cutover.retireLegacy" in message and "gantryWeight 50" in message


def test_the_first_up_of_a_stack_works_and_retiring_there_is_refused():
    run({"legacyTarget": LEGACY, "gantryWeight": 0})
    assert "no earlier `up`" in refusal({"legacyTarget": LEGACY, "gantryWeight": 100, "retireLegacy": True})


def test_legacy_pointing_at_gantrys_own_edge_is_refused():
    edge = "gantry-lb-alb-1234567890.eu-west-1.elb.amazonaws.com"
    message = refusal(
        {"legacyTarget": edge, "gantryWeight": 10},
        previous={"legacyTarget": LEGACY, "gantryWeight": 0, "gantryTarget": edge},
    )
    assert "gantry:migration.cutover.legacyTarget" in message and "own edge" in message
    # On a first `up` there is no recorded edge yet; the component refuses when the name resolves.
    with pytest.raises(ValueError, match="own edge"):
        refuse_own_edge(edge.upper(), edge)
    assert refuse_own_edge(LEGACY, edge) == edge


def test_weights_split_the_hostname_and_refuse_out_of_range():
    assert weights(10) == {"legacy": 90, "gantry": 10}
    assert weights(100, legacy_retired=True) == {"gantry": 100}
    for bad in (-1, 101):
        with pytest.raises(ValueError, match="allowed: 0 to 100"):
            weights(bad)


def test_rules_are_pure_and_each_can_fail():
    domain = DomainSettings(hosted_zone_id=ZONE_ID, hostname=HOSTNAME)
    ok = CutoverSettings(legacy_target=LEGACY, gantry_weight=10)
    assert list(cutover_problems(ok, domain, zone_name="acme.io", previous=None)) == []
    assert [k for k, _ in cutover_problems(ok, None, zone_name=None, previous=None)] == ["migration.cutover"]
    apex = DomainSettings(hosted_zone_id=ZONE_ID, hostname="acme.io")
    assert "domain.hostname" in [k for k, _ in cutover_problems(ok, apex, zone_name="acme.io.", previous=None)]
    itself = CutoverSettings(legacy_target=HOSTNAME, gantry_weight=10)
    assert [k for k, _ in cutover_problems(itself, domain, zone_name=None, previous=None)] == [
        "migration.cutover.legacyTarget"
    ]
    done = PreviousCutover(legacy_target=LEGACY, gantry_weight=100)
    assert [k for k, _ in cutover_problems(None, domain, zone_name=None, previous=done)] == ["migration.cutover"]
    assert list(cutover_problems(None, domain, zone_name=None, previous=None)) == []


def test_previous_state_is_read_only_from_a_well_formed_output():
    assert PreviousCutover.from_outputs({}) is None
    assert PreviousCutover.from_outputs({"migrationCutover": None}) is None
    assert PreviousCutover.from_outputs({"migrationCutover": {"legacyTarget": LEGACY, "gantryWeight": True}}) is None
    # Outputs come back through the engine as floats.
    recorded = PreviousCutover.from_outputs({"migrationCutover": {"legacyTarget": LEGACY, "gantryWeight": 50.0}})
    assert recorded == PreviousCutover(legacy_target=LEGACY, gantry_weight=50)


def test_the_loader_reports_cutover_problems_by_key():
    config, secret_keys = with_test_secrets(stack_config("dev"))
    config["gantry:migration"] = {"cutover": {"legacyTarget": "https://env.elasticbeanstalk.com/", "gantryWeight": 120}}
    with pytest.raises(ConfigError) as err:
        load_settings(
            {k: v for k, v in config.items() if k.startswith("gantry:")}, region="eu-west-1", secret_keys=secret_keys
        )
    text = "\n".join(err.value.problems)
    assert "gantry:migration.cutover.legacyTarget" in text and "without scheme" in text
    assert "gantry:migration.cutover.gantryWeight: 120 is not allowed: must be between 0 and 100" in text


def test_production_is_known_by_name_or_by_deletion_protection():
    from components.settings.migration import production_stack

    for name in ("prod", "production", "prod-eu", "Production-2", "api-prod"):
        assert production_stack(name, deletion_protection=False), name
    assert production_stack("dev", deletion_protection=True)
    assert not production_stack(None, deletion_protection=False)
    for other in ("dev", "staging", "product-demo"):
        assert not production_stack(other, deletion_protection=False), other


def test_the_fault_switch_is_refused_on_a_stack_named_prod_even_without_deletion_protection():
    config, secret_keys = with_test_secrets(stack_config("dev"))
    container = dict(config["gantry:container"])
    container["environment"] = {**container["environment"], "FAULT_INJECT": "5xx"}
    config["gantry:container"] = container
    raw = {k: v for k, v in config.items() if k.startswith("gantry:")}
    assert (
        load_settings(raw, region="eu-west-1", secret_keys=secret_keys, stack="dev").container.variables["FAULT_INJECT"]
        == "5xx"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(raw, region="eu-west-1", secret_keys=secret_keys, stack="prod")
    assert any(
        p.startswith("gantry:container.environment.FAULT_INJECT: is refused on a production stack")
        for p in err.value.problems
    )


def test_a_hostname_gantrys_alias_already_serves_is_not_cut_over():
    with pytest.raises(pulumi.RunError) as err:
        config, secret_keys = with_test_secrets(stack_config("dev"))
        config["gantry:domain"] = DOMAIN
        config["gantry:migration"] = {"cutover": {"legacyTarget": LEGACY, "gantryWeight": 10}}
        run_program("dev", config, secret_keys, Graph(previous_outputs={"serviceUrl": f"https://{HOSTNAME}"}))
    assert "already served by gantry's own alias record" in str(err.value)
    # A stack that served plain HTTP (or another hostname) before may start a cutover.
    g = run_program_with_url("http://gantry-lb-alb-1.eu-west-1.elb.amazonaws.com")
    assert {r.inputs["setIdentifier"] for r in hostname_records(g)} == {"legacy", "gantry"}


def run_program_with_url(url: str) -> Graph:
    config, secret_keys = with_test_secrets(stack_config("dev"))
    config["gantry:domain"] = DOMAIN
    config["gantry:migration"] = {"cutover": {"legacyTarget": LEGACY, "gantryWeight": 10}}
    return run_program("dev", config, secret_keys, Graph(previous_outputs={"serviceUrl": url}))


# ---- Taking over the hand-made `legacy` record ------------------------------------------------------
# docs/migration.md has the user create the weighted `legacy` record before the first cutover `up`. The pinned
# provider creates a record with Route 53's CREATE unless `allow_overwrite` is set, then with UPSERT
# (pulumi_aws/route53/record.py documents allow_overwrite as "Allow creation of this record to overwrite
# an existing record, if any"; terraform-provider-aws internal/service/route53/record.go: "Use UPSERT only
# if the overwrite flag is true or if the current action is an update / Else CREATE is used and fail if
# the same record exists").
README_LEGACY = "my-env.eu-west-1.elasticbeanstalk.com"


def readme_change_batch() -> dict:
    """The change batch the migration guide (docs/migration.md) tells the user to apply by hand."""
    section = (ROOT / "docs" / "migration.md").read_text().split("# Moving off Beanstalk", 1)[1]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    return json.loads(block)


def record_set(inputs: dict) -> dict:
    """The ResourceRecordSet the provider sends for a record's inputs (expandResourceRecordSet)."""
    rrset = {"Name": inputs["name"], "Type": inputs["type"], "TTL": int(inputs["ttl"])}
    rrset["ResourceRecords"] = [{"Value": value} for value in inputs["records"]]
    if "setIdentifier" in inputs:
        rrset["SetIdentifier"] = inputs["setIdentifier"]
        rrset["Weight"] = int(inputs["weightedRoutingPolicies"][0]["weight"])
    return rrset


def by_role(g: Graph) -> dict[str, dict]:
    return {r.inputs["setIdentifier"]: r.inputs for r in hostname_records(g)}


@pytest.mark.parametrize(
    ("cutover", "previous"),
    [
        ({"legacyTarget": LEGACY, "gantryWeight": 0}, None),  # the first cutover `up`, as the README says
        ({"legacyTarget": LEGACY, "gantryWeight": 10}, None),  # a first `up` that already shifts
        ({"legacyTarget": LEGACY, "gantryWeight": 50}, {"legacyTarget": LEGACY, "gantryWeight": 10}),
        ({"legacyTarget": LEGACY, "gantryWeight": 100}, {"legacyTarget": LEGACY, "gantryWeight": 50}),
    ],
)
def test_only_the_legacy_record_overwrites_on_every_state(cutover, previous):
    records = by_role(run(cutover, previous))
    # The same input on every `up`: a later state that dropped it would show a diff on the record.
    assert records["legacy"]["allowOverwrite"] is True
    # A `gantry` record that already exists was not made by the README's step: refusing it is right.
    assert "allowOverwrite" not in records["gantry"]


def test_after_retiring_legacy_nothing_overwrites():
    held = {"legacyTarget": LEGACY, "gantryWeight": 100}
    [record] = hostname_records(run({"legacyTarget": LEGACY, "gantryWeight": 100, "retireLegacy": True}, held))
    assert "allowOverwrite" not in record.inputs


def test_the_readme_by_hand_record_is_exactly_what_the_first_up_writes():
    delete, create = readme_change_batch()["Changes"]
    assert (delete["Action"], create["Action"]) == ("DELETE", "CREATE")
    hand_made = create["ResourceRecordSet"]
    assert hand_made["Name"] == HOSTNAME and delete["ResourceRecordSet"]["Name"] == HOSTNAME
    records = by_role(run({"legacyTarget": README_LEGACY, "gantryWeight": 0}))
    # Name, type and set identifier are what Route 53 matches an UPSERT on; weight, TTL and target
    # equal too, so the takeover changes nothing the resolvers see.
    assert record_set(records["legacy"]) == hand_made


@pytest.fixture
def route53(monkeypatch):
    """moto's Route 53 with the README's starting point: the hostname as a plain CNAME to Beanstalk."""
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        client = boto3.client("route53", region_name="us-east-1")
        zone = client.create_hosted_zone(Name="acme.io", CallerReference="gantry-cutover")["HostedZone"]["Id"]
        plain = readme_change_batch()["Changes"][0]["ResourceRecordSet"]
        client.change_resource_record_sets(
            HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": plain}]}
        )
        yield client, zone


def test_the_takeover_succeeds_only_as_the_upsert_allow_overwrite_sends(route53):
    client, zone = route53
    client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch=readme_change_batch())
    legacy = record_set(by_role(run({"legacyTarget": README_LEGACY, "gantryWeight": 0}))["legacy"])

    def send(action: str) -> None:
        change = {"Action": action, "ResourceRecordSet": legacy}
        client.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [change]})

    # Without allow_overwrite the provider's CREATE is refused: the record exists (the failure).
    # moto detects only an identical CREATE; Route 53 refuses any CREATE whose name, type and set
    # identifier exist ("Tried to create resource record set ... but it already exists").
    with pytest.raises(ClientError) as err:
        send("CREATE")
    assert "already exists" in str(err.value)
    send("UPSERT")
    answers = client.list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    at_hostname = [r for r in answers if r["Name"] == f"{HOSTNAME}."]
    assert [(r["Type"], r.get("SetIdentifier"), r.get("Weight")) for r in at_hostname] == [("CNAME", "legacy", 100)]
    assert at_hostname[0]["ResourceRecords"] == [{"Value": README_LEGACY}]
