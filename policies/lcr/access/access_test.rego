package lcr.access_test

import data.lcr.access

# A senior carer at Rosewood House (VM101, South East London) reading a record.
_input := {
	"subject": {
		"sub": "staff-0042",
		"name": "Ada Carer",
		"requesting_organization": "VM101",
		"reason_for_request": "directcare",
		"lcr_access_level": "senior_carer",
		"iss": "https://care-app.example",
		"aud": "lcr-sidecar",
		"iat": 1764072000,
		"exp": 1764072300,
	},
	"patient": {"nhs_number": "9990000018", "dob": "1938-04-12"},
	"requested_record": {"nhs_number": "9990000018"},
	"action": "record.read",
	"sections": [],
	"request": {
		"id": "0f9c", "time": "2026-11-25T12:00:00Z", "date": "2026-11-25", "client": "127.0.0.1",
		"purpose": "directcare",
	},
}

# _input with the given subject attributes changed.
_as(subject) := object.union(_input, {"subject": subject})

# _input asking for the given sections.
_asking(sections) := object.union(_input, {"sections": sections})

_admin := ["alerts", "appointments", "visits_encounters"]

_senior := [
	"alerts", "allergies", "appointments", "care_plans", "diagnoses", "discharge_summaries",
	"family_history", "issued_medications", "lab_results", "letters", "maternity", "medications",
	"procedures", "progress_notes", "referrals", "social_care", "social_history", "visits_encounters",
	"vital_signs",
]

_registered_manager := sort(array.concat(_senior, [
	"additional_gp_reports", "clinical_correspondence", "clinical_document_reports",
	"community_information", "endoscopy", "gp_records", "mental_health",
]))

_denied(reasons, level) := {
	"allow": false, "access_level": level, "sections": [], "permitted": [], "reasons": reasons,
	"audit_scope": null, "relationship": "resident", "roster_revision": _roster.revision,
}

# The resident of _input lives at every care service these tests ask from, so each test
# below checks what it names; relationship_test.rego varies the roster.
_resident := {"9990000018": {"status": "resident", "start": "2024-03-11", "end": null, "family_name": "Thompson"}}

_roster := {"revision": "roster-sha256-test", "care_services": {ods: _resident | some ods in _ods_codes}}

_ods_codes := ["VM101", "VM102", "VM201", "VM301", "VM401", "VM999", "X1"]

test_decision_senior_carer_allowed if {
	access.decision with input as _input with data.roster as _roster == {
		"allow": true,
		"access_level": "senior_carer",
		"sections": _senior,
		"permitted": _senior,
		"reasons": [],
		"audit_scope": null,
	}
}

test_decision_admin_sections if {
	d := access.decision with input as _as({"lcr_access_level": "admin"}) with data.roster as _roster
	d.allow
	d.sections == _admin
}

test_decision_registered_manager_sections if {
	d := access.decision with input as _as({"lcr_access_level": "registered_manager"}) with data.roster as _roster
	d.allow
	d.sections == _registered_manager
	count(d.sections) == 26
}

test_decision_menu_read_allowed if {
	d := access.decision with input as object.union(_input, {"action": "menu.read"}) with data.roster as _roster
	d.allow
	d.sections == _senior
}

test_decision_other_london_service_allowed if {
	access.decision.allow with input as _as({"requesting_organization": "VM102"}) with data.roster as _roster
}

test_decision_requested_sections_intersected_and_sorted if {
	d := access.decision with input as _asking(["vital_signs", "mental_health", "alerts"]) with data.roster as _roster
	d.allow
	d.sections == ["alerts", "vital_signs"]
	d.permitted == _senior
	d.reasons == []
}

test_decision_sections_absent_or_null_means_all if {
	access.decision.sections == _senior with input as object.remove(_input, ["sections"]) with data.roster as _roster
	access.decision.sections == _senior with input as _asking(null) with data.roster as _roster
}

test_decision_access_level_missing if {
	access.decision == _denied(["access_level_missing"], null)
		with input as json.remove(_input, ["subject/lcr_access_level"]) with data.roster as _roster
	access.decision == _denied(["access_level_missing"], null) with input as _as({"lcr_access_level": ""})
		with data.roster as _roster
	access.decision == _denied(["access_level_missing"], null) with input as _as({"lcr_access_level": 3})
		with data.roster as _roster
}

test_decision_access_level_unknown if {
	access.decision == _denied(["access_level_unknown"], "superuser") with input as _as({"lcr_access_level": "superuser"})
		with data.roster as _roster
}

test_decision_access_level_no_access if {
	access.decision == _denied(["access_level_no_access"], "no_access")
		with input as _as({"lcr_access_level": "no_access"}) with data.roster as _roster
}

test_decision_no_access_requesting_sections_has_one_reason if {
	d := access.decision with input as object.union(_as({"lcr_access_level": "no_access"}), {"sections": ["alerts"]})
		with data.roster as _roster
	d.reasons == ["access_level_no_access"]
}

test_decision_care_service_missing if {
	# With no care service there is no one it looks after either.
	access.decision.reasons == ["care_service_missing", "no_legitimate_relationship"]
		with input as json.remove(_input, ["subject/requesting_organization"]) with data.roster as _roster
	access.decision.reasons == ["care_service_missing", "no_legitimate_relationship"]
		with input as _as({"requesting_organization": ""}) with data.roster as _roster
}

test_decision_care_service_unknown if {
	access.decision.reasons == ["care_service_unknown"] with input as _as({"requesting_organization": "VM999"})
		with data.roster as _roster
}

test_decision_care_service_not_residential if {
	access.decision == _denied(["care_service_not_residential"], "senior_carer")
		with input as _as({"requesting_organization": "VM201"}) with data.roster as _roster
}

test_decision_care_service_lcr_not_enabled if {
	access.decision.reasons == ["care_service_lcr_not_enabled"] with input as _as({"requesting_organization": "VM301"})
		with data.roster as _roster
}

test_decision_care_service_not_in_london_icb if {
	access.decision.reasons == ["care_service_not_in_london_icb"] with input as _as({"requesting_organization": "VM401"})
		with data.roster as _roster
}

test_decision_care_service_all_service_checks if {
	access.decision.reasons == [
		"care_service_lcr_not_enabled",
		"care_service_not_in_london_icb",
		"care_service_not_residential",
	]
		with input as _as({"requesting_organization": "X1"}) with data.roster as _roster
		with data.lcr.config.care_services as {"X1": {"name": "Somewhere", "type": "hospice"}}
}

test_decision_care_service_enabled_must_be_true if {
	access.decision.reasons == ["care_service_lcr_not_enabled"]
		with input as _as({"requesting_organization": "X1"}) with data.roster as _roster
		with data.lcr.config.care_services as {"X1": {"type": "residential_care_home", "lcr_enabled": "yes", "icb": "QMJ"}}
}

test_decision_reason_for_request_not_permitted if {
	access.decision.reasons == ["reason_for_request_not_permitted"] with input as _as({"reason_for_request": "research"})
		with data.roster as _roster
	access.decision.reasons == ["reason_for_request_not_permitted"]
		with input as json.remove(_input, ["subject/reason_for_request"]) with data.roster as _roster
}

test_decision_action_not_permitted if {
	access.decision.reasons == ["action_not_permitted"] with input as object.union(_input, {"action": "record.write"})
		with data.roster as _roster
	access.decision.reasons == ["action_not_permitted"] with input as object.remove(_input, ["action"])
		with data.roster as _roster
}

test_decision_patient_identifiers_missing if {
	every patient in [{"dob": "1938-04-12"}, {"nhs_number": "9990000018"}, {"nhs_number": "", "dob": "1938-04-12"}] {
		d := access.decision with input as object.union(object.remove(_input, ["patient"]), {"patient": patient})
			with data.roster as _roster
		not d.allow
		"patient_identifiers_missing" in d.reasons
	}
	access.decision.reasons == ["no_legitimate_relationship", "patient_identifiers_missing"]
		with input as object.remove(_input, ["patient"]) with data.roster as _roster
}

test_decision_section_unknown if {
	access.decision == _denied(["section_unknown"], "senior_carer") with input as _asking(["alerts", "patient"])
		with data.roster as _roster
	access.decision.reasons == ["section_unknown"] with input as _asking(["alerts", 7]) with data.roster as _roster
}

test_decision_section_unknown_when_sections_not_a_list if {
	access.decision.reasons == ["section_unknown"] with input as _asking("alerts") with data.roster as _roster
	access.decision.reasons == ["section_unknown"] with input as _asking({"alerts": true}) with data.roster as _roster
}

test_decision_section_unknown_only if {
	access.decision.reasons == ["no_permitted_section_requested", "section_unknown"] with input as _asking(["bogus"])
		with data.roster as _roster
}

test_decision_no_permitted_section_requested if {
	access.decision == _denied(["no_permitted_section_requested"], "admin")
		with input as object.union(_as({"lcr_access_level": "admin"}), {"sections": ["diagnoses", "mental_health"]})
		with data.roster as _roster
}

test_decision_empty_input_denied_with_every_missing_reason if {
	access.decision == object.union(
		_denied(
			[
				"access_level_missing", "action_not_permitted", "care_service_missing",
				"patient_identifiers_missing", "reason_for_request_not_permitted",
			],
			null,
		),
		{"relationship": null},
	)
		with input as {} with data.roster as _roster
}

test_decision_no_input_denied if {
	not access.allow
	access.decision.reasons == [
		"access_level_missing", "action_not_permitted", "care_service_missing",
		"patient_identifiers_missing", "reason_for_request_not_permitted",
	]
}

test_decision_every_check_reported_together if {
	d := access.decision with input as {
		"subject": {"lcr_access_level": "no_access", "requesting_organization": "VM401", "reason_for_request": "audit"},
		"patient": {"nhs_number": "9990000018"},
		"action": "delete",
		"sections": ["bogus"],
	}
	d.reasons == [
		"access_level_no_access", "action_not_permitted", "care_service_not_in_london_icb",
		"patient_identifiers_missing", "reason_for_request_not_permitted", "section_unknown",
	]
	d.sections == []
	not d.allow
}

test_decision_levels_come_from_data if {
	levels := {"night_carer": ["alerts", "vital_signs"]}
	access.decision.sections == ["alerts", "vital_signs"]
		with input as _as({"lcr_access_level": "night_carer"}) with data.roster as _roster
		with data.lcr.config.access_levels as levels
	access.decision.reasons == ["access_level_unknown"]
		with input as _input with data.roster as _roster
		with data.lcr.config.access_levels as levels
}

test_decision_london_icbs_come_from_data if {
	access.decision.allow with input as _as({"requesting_organization": "VM401"}) with data.roster as _roster
		with data.lcr.config.london_icbs as {"QKS": "Kent and Medway"}
}

_audit(subject) := object.union(_as(subject), {"action": "audit.read"})

test_decision_audit_trail_registered_manager_sees_own_care_service if {
	d := access.decision with input as _audit({"lcr_access_level": "registered_manager"}) with data.roster as _roster
	d.allow
	d.audit_scope == "own_care_service"
	d.sections == []
	d.permitted == []
}

test_decision_audit_trail_auditor_role_sees_all if {
	d := access.decision with input as _audit({"lcr_access_level": "no_access", "lcr_audit_role": "auditor"})
		with data.roster as _roster
	d.allow
	d.audit_scope == "all"
}

test_decision_audit_trail_unknown_role_falls_back_to_level if {
	d := access.decision with input as _audit({"lcr_access_level": "registered_manager", "lcr_audit_role": "cleaner"})
		with data.roster as _roster
	d.audit_scope == "own_care_service"
}

test_decision_audit_trail_not_permitted_for_senior_carer if {
	# An Audit Trail read is not a record read: no relationship is looked up for it.
	access.decision == object.union(_denied(["audit_trail_not_permitted"], "senior_carer"), {"relationship": null})
		with input as _audit({}) with data.roster as _roster
	d := access.decision with input as _audit({"lcr_access_level": "no_access"}) with data.roster as _roster
	d.reasons == ["audit_trail_not_permitted"]
}

test_decision_audit_trail_still_needs_an_eligible_care_service if {
	manager_elsewhere := {"lcr_access_level": "registered_manager", "requesting_organization": "VM301"}
	d := access.decision with input as _audit(manager_elsewhere) with data.roster as _roster
	d.reasons == ["care_service_lcr_not_enabled"]
}

# `decision` answers the common case from _resident_status and _clear alone, and anything
# else from _decision (every rule): the first must hold for the common case, and the two
# must agree wherever it holds or nearly holds.
test_common_case_is_decided_by_the_first_body if {
	access._resident_status == "resident" with input as _input with data.roster as _roster
	access._clear with input as _input with data.roster as _roster
	access._resident_status == "resident" with input as object.union(_input, {"action": "menu.read"})
		with data.roster as _roster
	access._clear with input as _as({"lcr_access_level": "admin"}) with data.roster as _roster
}

_near_the_common_case := [
	_input,
	_as({"lcr_access_level": "admin"}),
	_as({"lcr_access_level": "registered_manager"}),
	_as({"lcr_access_level": "no_access"}),
	_as({"lcr_access_level": "superuser"}),
	_as({"lcr_access_level": ""}),
	_as({"lcr_access_level": 3}),
	json.remove(_input, ["subject/lcr_access_level"]),
	_as({"requesting_organization": "VM102"}),
	_as({"requesting_organization": "VM201"}),
	_as({"requesting_organization": "VM301"}),
	_as({"requesting_organization": "VM401"}),
	_as({"requesting_organization": "VM999"}),
	_as({"requesting_organization": ""}),
	_as({"reason_for_request": "research"}),
	json.remove(_input, ["subject/reason_for_request"]),
	object.union(_input, {"action": "menu.read"}),
	object.union(_input, {"action": "audit.read"}),
	object.union(_input, {"action": "record.write"}),
	object.remove(_input, ["action"]),
	_asking(["alerts"]),
	_asking(["gp_records"]),
	_asking(["bogus"]),
	_asking(null),
	_asking("alerts"),
	_asking({}),
	object.remove(_input, ["sections"]),
	object.union(_input, {"patient": {"nhs_number": "9990000018", "dob": ""}}),
	object.union(_input, {"patient": {"nhs_number": "9990000018", "dob": 19380412}}),
	json.remove(_input, ["patient/dob"]),
	object.union(_input, {"patient": {"nhs_number": "9990000026", "dob": "1938-04-12"}}),
	object.union(_input, {"requested_record": {"nhs_number": "9990000026"}}),
	object.union(_input, {"requested_record": {"nhs_number": ""}}),
	object.union(_input, {"requested_record": null}),
	json.remove(_input, ["requested_record"]),
	_history({"no-matching-record": 4}, {}),
	_history({"no-matching-record": 4}, {"no_legitimate_relationship": 1}),
	_history({"no-matching-record": "9"}, null),
	object.union(_input, {"request": {"date": "2024-03-10"}}),
	object.union(_input, {"request": {"date": "2024-03-11"}}),
	object.union(_input, {"request": {"date": "2026-02-30"}}),
	json.remove(_input, ["request/date"]),
	{},
]

_rosters := [
	_roster,
	{"revision": 7, "care_services": _roster.care_services},
	{"care_services": _roster.care_services},
	{"revision": "r"},
	_one({"status": "respite", "start": "2026-11-01", "end": null}),
	_one({"status": "respite", "start": "2026-11-01", "end": "2026-11-20"}),
	_one({"status": "respite", "start": "2026-11-01"}),
	_one({"status": "resident", "start": "2024-01-01", "end": "2026-11-20"}),
	_one({"status": "resident", "start": "2026-11-26", "end": null}),
	_one({"status": "resident", "start": null, "end": null}),
	_one({"status": "resident", "end": null}),
	_one({"status": "discharged", "start": "2024-01-01", "end": "2026-11-20"}),
	_one({"status": "discharged", "start": null, "end": "2026-11-20"}),
	_one({"status": "pre_admission", "start": "2026-12-20", "end": null}),
	_one({"status": "waiting_list", "start": "2024-01-01", "end": null}),
]

test_first_body_agrees_with_every_rule if {
	every x in _near_the_common_case {
		access.decision == access._decision with input as x with data.roster as _roster
	}
}

test_first_body_agrees_with_every_rule_on_other_rosters if {
	inputs := [
		_input, object.union(_input, {"action": "menu.read"}), object.union(_input, {"action": "audit.read"}),
		object.union(_input, {"requested_record": {"nhs_number": "9990000026"}}),
	]
	every roster in _rosters {
		every x in inputs {
			access.decision == access._decision with input as x with data.roster as roster
		}
	}
}

test_first_body_agrees_with_every_rule_under_other_data if {
	every x in _near_the_common_case {
		access.decision == access._decision with input as x with data.roster as _roster
			with data.lcr.config.relationship.actions as ["record.read"]
		access.decision == access._decision with input as x with data.roster as _roster
			with data.lcr.config.relationship.actions as ["record.read", "menu.read", "audit.read"]
		access.decision == access._decision with input as x with data.roster as _roster
			with data.lcr.config.token_binding.required as false
		access.decision == access._decision with input as x with data.roster as _roster
			with data.lcr.config.identifier_probing.cool_off_after as 1
		access.decision == access._decision with input as x with data.roster as _roster
			with data.lcr.config.access_levels as {"senior_carer": [], "admin": ["alerts"]}
	}
}
