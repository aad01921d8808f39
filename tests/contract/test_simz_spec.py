"""The SimZ request contract: validate_request holds bodies to simz-openapi.yaml."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest
import yaml

from syncd.config.calls import WebhookConfig
from syncd.domain.batching import request_body
from syncd.domain.call_ref import make_ref
from syncd.sandbox import simz_spec
from syncd.sandbox.simz_spec import is_email, is_uri, validate_request, validate_schema

#: SHA-256 of the vendor's OpenAPI document as published; the packaged copy must not drift.
VENDOR_SPEC_SHA256 = "30ba27900d7c1c2b54ccd0d9c81da2de7ea4594342221d5b94a1b31703fbc679"

FULL_LEAD: dict[str, Any] = {
    "phoneNumber": "+14155552671",
    "firstName": "Michael",
    "lastName": "Thompson",
    "email": "michael.thompson@example.com",
    "salesforceId": "00Q5e00000AbCdEFGH",
    "campaignType": "web-inbound",
    "customData": {"leadId": "LEAD-789", "campaignTag": "summer-sale-2024", "score": 7},
}
FULL_REQUEST: dict[str, Any] = {
    "leads": [FULL_LEAD],
    "options": {
        "priority": "normal",
        "enableAMD": True,
        "webhookUrl": "https://hooks.example.com/simz?source=syncd",
    },
}


def broken(change: Any) -> dict[str, Any]:
    """A deep copy of FULL_REQUEST with ``change(body)`` applied."""
    body = copy.deepcopy(FULL_REQUEST)
    change(body)
    return body


class TestSpecCopy:
    def test_the_packaged_spec_is_the_vendor_spec(self) -> None:
        """The spec shipped in the package is byte for byte the vendor's document."""
        digest = hashlib.sha256(simz_spec.SPEC_PATH.read_bytes()).hexdigest()
        assert digest == VENDOR_SPEC_SHA256

    def test_the_request_schema_is_the_one_the_operation_names(self) -> None:
        """The validator checks the schema that the submit-leads operation references."""
        spec = yaml.safe_load(simz_spec.SPEC_PATH.read_text())
        operation = spec["paths"][simz_spec.LEAD_PATH_PREFIX + "{agentId}"]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{simz_spec.REQUEST_SCHEMA}"


class TestValidRequests:
    def test_the_vendor_example_is_valid(self) -> None:
        """The request example from the vendor's page passes."""
        example = {
            "leads": [
                {
                    "phoneNumber": "+14155552671",
                    "firstName": "Michael",
                    "lastName": "Thompson",
                    "customData": {"leadId": "LEAD-789", "campaignTag": "summer-sale-2024"},
                }
            ],
            "options": {"priority": "normal"},
        }
        assert validate_request(example) == []

    def test_every_field_and_option_set_is_valid(self) -> None:
        """A request using every documented field and option passes."""
        assert validate_request(FULL_REQUEST) == []

    def test_only_required_fields_is_valid(self) -> None:
        """A lead with only phoneNumber and no options passes: optional fields may be absent."""
        assert validate_request({"leads": [{"phoneNumber": "+14155552671"}]}) == []

    def test_null_optional_fields_are_valid(self) -> None:
        """The spec types optional fields as nullable, so explicit nulls pass."""
        lead = {key: None for key in FULL_LEAD if key != "phoneNumber"}
        body = {
            "leads": [{"phoneNumber": "+14155552671", **lead}],
            "options": {"priority": None, "enableAMD": None, "webhookUrl": None},
        }
        assert validate_request(body) == []

    def test_a_body_with_the_correlation_key_and_the_webhook_url_is_valid(self) -> None:
        """With simz.webhook, each lead's customData gains the ref and options the webhookUrl."""
        secret = b"c" * 32
        payloads = [
            FULL_LEAD,
            {"phoneNumber": "+14155552672", "salesforceId": "00Q5e00000AbCdEFGI"},
        ]
        refs = (
            "syncdRef",
            [make_ref(secret, "00Q5e00000AbCdEFGH", 1), make_ref(secret, "00Q5e00000AbCdEFGI", 2)],
        )
        url = hook_url("https://hooks.example.com/", "t" * 40)
        body = request_body(payloads, {"priority": "normal", "webhookUrl": url}, refs)
        assert body["options"]["webhookUrl"] == "https://hooks.example.com/hooks/simz/" + "t" * 40
        assert body["leads"][0]["customData"]["campaignTag"] == "summer-sale-2024"
        assert [lead["customData"]["syncdRef"] for lead in body["leads"]] == refs[1]
        assert validate_request(body) == []
        assert "syncdRef" not in FULL_LEAD["customData"]

    def test_an_odd_token_still_makes_a_valid_webhook_url(self) -> None:
        """A token with characters a path cannot hold is percent-encoded, so the URL passes."""
        url = hook_url("https://hooks.example.com/in", "a b/c?d#e%f" + "x" * 30)
        assert url.startswith("https://hooks.example.com/in/hooks/simz/a%20b%2Fc%3Fd%23e%25f")
        assert validate_request({"leads": [], "options": {"webhookUrl": url}}) == []

    def test_an_empty_lead_list_is_valid(self) -> None:
        """The schema sets no minimum number of leads."""
        assert validate_request({"leads": []}) == []

    def test_a_batch_of_many_leads_is_valid(self) -> None:
        """Large batches pass: the spec documents no maximum."""
        assert validate_request({"leads": [FULL_LEAD] * 500}) == []


class TestInvalidRequests:
    @pytest.mark.parametrize(
        ("change", "where"),
        [
            (lambda b: b["leads"][0].pop("phoneNumber"), "leads[0]: 'phoneNumber' is a required"),
            (lambda b: b.pop("leads"), "(body): 'leads' is a required"),
            (lambda b: b.update(leads={"phoneNumber": "+1"}), "leads: {"),
            (lambda b: b.update(leads="+14155552671"), "leads: '+14155552671' is not of type"),
            (lambda b: b["leads"].append("+14155552671"), "leads[1]: '+14155552671' is not of"),
            (lambda b: b["leads"][0].update(phoneNumber=14155552671), "leads[0].phoneNumber:"),
            (lambda b: b["leads"][0].update(phoneNumber=None), "leads[0].phoneNumber: None"),
            (lambda b: b["leads"][0].update(firstName=7), "leads[0].firstName: 7"),
            (lambda b: b["leads"][0].update(salesforceId=["x"]), "leads[0].salesforceId:"),
            (lambda b: b["leads"][0].update(customData=["a"]), "leads[0].customData: ['a']"),
            (lambda b: b["leads"][0].update(customData="a=1"), "leads[0].customData: 'a=1'"),
            (lambda b: b["leads"][0].update(email="not-an-email"), "leads[0].email:"),
            (lambda b: b["options"].update(enableAMD="yes"), "options.enableAMD: 'yes'"),
            (lambda b: b["options"].update(priority=1), "options.priority: 1"),
            (lambda b: b["options"].update(webhookUrl="hooks example"), "options.webhookUrl:"),
            (lambda b: b.update(options=["normal"]), "options: ['normal']"),
        ],
        ids=[
            "missing-phoneNumber",
            "missing-leads",
            "leads-an-object",
            "leads-a-string",
            "lead-not-an-object",
            "phone-a-number",
            "phone-null",
            "firstName-a-number",
            "salesforceId-a-list",
            "customData-a-list",
            "customData-a-string",
            "email-not-an-email",
            "enableAMD-a-string",
            "priority-a-number",
            "webhookUrl-not-a-uri",
            "options-a-list",
        ],
    )
    def test_a_broken_request_is_refused_with_its_place(self, change: Any, where: str) -> None:
        """A request that breaks the schema yields a problem naming where it is."""
        problems = validate_request(broken(change))
        assert problems, "expected the request to be refused"
        assert any(p.startswith(where) for p in problems), problems

    @pytest.mark.parametrize("body", [[], "leads", 42, None])
    def test_a_body_that_is_not_an_object_is_refused(self, body: object) -> None:
        """Only a JSON object can be a LeadSubmissionRequest."""
        assert validate_request(body) != []

    def test_every_problem_is_reported(self) -> None:
        """All problems are listed at once, not only the first."""
        body = {"leads": [{"firstName": 1}, {"phoneNumber": 2}]}
        problems = validate_request(body)
        assert len(problems) == 3, problems


class TestFormats:
    @pytest.mark.parametrize(
        "value",
        ["a@example.com", "first.last+tag@mail.example.co.uk", "o'hara@example.ie", "x@a-b.io"],
    )
    def test_ordinary_email_addresses_pass(self, value: str) -> None:
        """Real-world addresses pass the email format."""
        assert is_email(value)

    @pytest.mark.parametrize(
        "value",
        [
            "plainaddress",
            "a@b",  # the permissive default accepts anything with an @
            "a@@example.com",
            "a b@example.com",
            "a@example..com",
            ".a@example.com",
            "a.@example.com",
            "a@-example.com",
            "jos\u00e9@example.com",
            "",
            "x" * 65 + "@example.com",
        ],
    )
    def test_strict_email_format_refuses_these(self, value: str) -> None:
        """The email format is asserted strictly, stricter than jsonschema's default."""
        assert not is_email(value)

    @pytest.mark.parametrize(
        "value",
        ["https://hooks.example.com/x?a=1&b=%20", "http://127.0.0.1:8080/h", "urn:isbn:0451450523"],
    )
    def test_absolute_uris_pass(self, value: str) -> None:
        """Absolute RFC 3986 URIs pass the uri format."""
        assert is_uri(value)

    @pytest.mark.parametrize(
        "value", ["/relative/path", "hooks.example.com", "https://a b.com", "https://x/%zz", ""]
    )
    def test_strict_uri_format_refuses_these(self, value: str) -> None:
        """Relative references, spaces and bad escapes are not a uri."""
        assert not is_uri(value)


class TestResponseSchemas:
    def test_response_schemas_are_available_for_checking_answers(self) -> None:
        """validate_schema checks any component, e.g. the documented 200 body."""
        ok = {"success": True, "batchId": None, "accepted": 0, "rejected": 0, "errors": []}
        assert validate_schema("LeadSubmissionResponse", ok) == []
        assert validate_schema("LeadSubmissionResponse", {"accepted": "1"}) != []

    def test_an_unknown_schema_name_is_an_error(self) -> None:
        """Asking for a schema the spec does not define fails loudly."""
        with pytest.raises(KeyError):
            validate_schema("NoSuchSchema", {})


def hook_url(public_url: str, token: str) -> str:
    """The ``options.webhookUrl`` syncd sends for this receiver."""
    webhook = WebhookConfig.model_validate(
        {"public_url": public_url, "token": token, "correlation_secret": "s" * 32}
    )
    return webhook.hook_url()
