package lcr.access_test

import data.lcr.access

# A senior carer at Rosewood House (VM101) asking on 2026-11-25 (London) for 9990000018.
# _input on the given day, at noon UTC.
_at(day) := object.union(_input, {"request": {"time": sprintf("%sT12:00:00Z", [day]), "date": day}})

# A roster where Rosewood House (VM101) has the resident of _input as `user`.
_one(user) := {"revision": "roster-sha256-r1", "care_services": {"VM101": {"9990000018": user}}}

test_resident_from_admission_day if {
	user := {"status": "resident", "start": "2026-11-25", "end": null}
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-11-24")
		with data.roster as _one(user)
	access.decision.allow with input as _at("2026-11-25") with data.roster as _one(user)
	access.decision.allow with input as _at("2030-01-01") with data.roster as _one(user)
	access.decision.relationship == "resident" with input as _at("2026-11-25") with data.roster as _one(user)
	access.decision.roster_revision == "roster-sha256-r1" with input as _at("2026-11-25") with data.roster as _one(user)
}

test_discharged_visible_for_the_grace_period_then_not if {
	user := {"status": "discharged", "start": "2024-01-01", "end": "2026-11-10"}
	access.decision.allow with input as _at("2026-11-10") with data.roster as _one(user)
	access.decision.allow with input as _at("2026-11-24") with data.roster as _one(user) # 14 days after the discharge
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-11-25")
		with data.roster as _one(user)
	access.decision.relationship == "discharged" with input as _at("2026-11-24") with data.roster as _one(user)
}

test_discharged_without_a_start_date if {
	user := {"status": "discharged", "start": null, "end": "2026-11-20"}
	access.decision.allow with input as _at("2026-11-25") with data.roster as _one(user)
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-12-05")
		with data.roster as _one(user)
}

test_resident_with_an_end_date_is_a_discharge if {
	user := {"status": "resident", "start": "2024-01-01", "end": "2026-11-01"}
	access.decision.allow with input as _at("2026-11-15") with data.roster as _one(user)
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-11-16")
		with data.roster as _one(user)
}

test_grace_period_comes_from_data if {
	user := {"status": "discharged", "start": "2024-01-01", "end": "2026-11-10"}
	not access.decision.allow with input as _input
		with data.roster as {"revision": "r", "care_services": {"VM101": {"9990000018": user}}}
		with data.lcr.config.relationship.discharge_grace_days as 7
}

test_respite_stay_and_its_grace if {
	user := {"status": "respite", "start": "2026-11-01", "end": "2026-11-08"}
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-10-31")
		with data.roster as _one(user)
	access.decision.allow with input as _at("2026-11-01") with data.roster as _one(user)
	access.decision.allow with input as _at("2026-11-22") with data.roster as _one(user)
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-11-23")
		with data.roster as _one(user)
	access.decision.allow
		with input as _at("2026-11-30")
		with data.roster as _one({"status": "respite", "start": "2026-11-01", "end": null})
}

test_pre_admission_window if {
	# Admission planned for 2026-12-20: the assessment window opens 28 days before.
	user := {"status": "pre_admission", "start": "2026-12-20", "end": null}
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-11-21")
		with data.roster as _one(user)
	access.decision.allow with input as _at("2026-11-22") with data.roster as _one(user)
	access.decision.allow with input as _at("2026-12-20") with data.roster as _one(user)
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-12-21")
		with data.roster as _one(user)
	access.decision.relationship == "pre_admission" with input as _at("2026-11-25") with data.roster as _one(user)
}

test_pre_admission_window_ends_at_its_end_date if {
	user := {"status": "pre_admission", "start": "2026-12-20", "end": "2026-12-01"}
	access.decision.allow with input as _at("2026-12-01") with data.roster as _one(user)
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-12-02")
		with data.roster as _one(user)
}

test_unknown_status_or_bad_dates_are_no_relationship if {
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-11-25")
		with data.roster as _one({"status": "waiting_list", "start": "2024-01-01", "end": null})
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-11-25")
		with data.roster as _one({"status": "Resident", "start": "2024-01-01", "end": null})
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-11-25")
		with data.roster as _one({"status": "resident", "start": "1 Jan 2024", "end": null})
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-11-25")
		with data.roster as _one({"status": "resident", "start": null, "end": null})
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-11-25")
		with data.roster as _one({"status": "discharged", "start": "2024-01-01", "end": null})
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as _at("2026-11-25")
		with data.roster as _one({"status": "discharged", "start": "2024-01-01", "end": 20261120})
}

test_unreadable_request_date_is_no_relationship if {
	every day in ["yesterday", "2026-11-31", "", 20261125] {
		d := access.decision
			with input as object.union(_input, {"request": {"date": day}})
			with data.roster as _roster
		d.reasons == ["no_legitimate_relationship"]
	}
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as json.remove(_input, ["request/date"])
		with data.roster as _roster
}

test_resident_of_another_care_service if {
	roster := {"revision": "r", "care_services": {"VM102": _resident, "VM101": {}}}
	access.decision.reasons == ["no_legitimate_relationship"] with input as _input with data.roster as roster
	access.decision.allow with input as _as({"requesting_organization": "VM102"}) with data.roster as roster
}

test_menu_needs_the_relationship_too if {
	access.decision.reasons == ["no_legitimate_relationship"]
		with input as object.union(_input, {"action": "menu.read"})
		with data.roster as {"revision": "r", "care_services": {"VM101": {}}}
}

test_roster_not_loaded if {
	d := access.decision with input as _input
	d.reasons == ["roster_not_loaded"]
	d.roster_revision == null
	access.decision.reasons == ["roster_not_loaded"] with input as _input with data.roster as {"revision": "r"}
}

test_audit_trail_reads_need_no_relationship if {
	d := access.decision
		with input as _audit({"lcr_access_level": "registered_manager"})
		with data.roster as {"care_services": {}}
	d.allow
	d.relationship == null
}

test_token_bound_to_another_resident if {
	d := access.decision with input as object.union(_input, {"requested_record": {"nhs_number": "9990000026"}})
		with data.roster as _roster
	d.reasons == ["token_patient_mismatch"]
	relaxed := access.decision with input as object.union(_input, {"requested_record": {"nhs_number": "9990000026"}})
		with data.roster as _roster
		with data.lcr.config.token_binding.required as false
	relaxed.reasons == ["token_patient_mismatch"]
}

test_token_not_bound if {
	unbound := json.remove(_input, ["requested_record"])
	access.decision.reasons == ["requested_record_missing"] with input as unbound with data.roster as _roster
	access.decision.reasons == ["requested_record_missing"]
		with input as object.union(_input, {"requested_record": {"nhs_number": ""}})
		with data.roster as _roster
	access.decision.reasons == ["requested_record_missing"]
		with input as object.union(_input, {"requested_record": null})
		with data.roster as _roster

	# During a migration period the platform team may let unbound tokens through.
	access.decision.allow with input as unbound with data.roster as _roster
		with data.lcr.config.token_binding.required as false
}

test_token_binding_does_not_apply_to_audit_trail_reads if {
	d := access.decision
		with input as json.remove(_audit({"lcr_access_level": "registered_manager"}), ["requested_record"])
		with data.roster as _roster
	d.allow
}

_history(outcomes, reasons) := object.union(
	_input,
	{"history": {"window_seconds": 3600, "outcomes": outcomes, "reasons": reasons}},
)

test_identifier_probing_cool_off if {
	access.decision.allow
		with input as _history({"no-matching-record": 2, "allowed": 40}, {"no_legitimate_relationship": 2})
		with data.roster as _roster
	d := access.decision
		with input as _history({"no-matching-record": 3, "allowed": 40}, {"no_legitimate_relationship": 2})
		with data.roster as _roster
	d.reasons == ["identifier_probing_cool_off"]
	access.decision.reasons == ["identifier_probing_cool_off"] with input as _history({"no-matching-record": 5}, {})
		with data.roster as _roster
}

test_identifier_probing_counts_only_numbers if {
	access.decision.allow with input as _history({"no-matching-record": "5"}, {"no_legitimate_relationship": [5]})
		with data.roster as _roster
	access.decision.allow with input as object.union(_input, {"history": null}) with data.roster as _roster
	access.decision.allow with input as _history(null, null) with data.roster as _roster
}
